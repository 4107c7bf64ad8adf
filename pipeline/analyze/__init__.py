"""analyze: description quality, pose faithfulness and a visual gallery of description artifacts.

from pipeline.analyze import AnalyzeConfig, analyze
summary = analyze(AnalyzeConfig(descriptions=["rules-mpii"], sample=24), store)   # -> reports/rules-mpii/
"""

from pipeline.analyze.stage import AnalyzeConfig, analyze

__all__ = ["AnalyzeConfig", "analyze"]
