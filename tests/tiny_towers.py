"""The paper's towers (a timm ViT image tower, a Hugging Face BERT text tower) at their smallest, built
locally: no hub, a few KB of weights. Shared by the towers tests and the export tests.

    folders = build_tiny_towers(tmp_path)      # {"bert": DIR, "vit": DIR}; registers the TINY arch
    create_clip(TINY, towers=Towers(image=str(folders["vit"]), text=str(folders["bert"])))
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import open_clip
import timm
import torch
import transformers
from safetensors.torch import save_file

from training.towers import register_model_configs

TINY = "test-tiny-ViT-BERT"  # the paper arch's families (timm vit_*_patch16_224, BERT), at their smallest
WORDS = "a person is standing sitting left right arm leg torso head the and of with on in photo".split()  # noqa: SIM905


def build_tiny_towers(root: Path) -> dict[str, Path]:
    """A tiny BERT folder (config, WordPiece tokenizer, weights) and a timm ViT checkpoint with an ImageNet
    head, as `save_pretrained` and timm's hub files lay them out; plus the tiny arch's open_clip config,
    registered with open_clip in this process."""
    chars = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *string.punctuation]
    vocab += [f"##{c}" for c in chars] + WORDS
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    bert = root / "bert"
    transformers.BertTokenizerFast(vocab=str(root / "vocab.txt")).save_pretrained(bert)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=1.0,  # BERT's 0.02 gives prompts near-equal embeddings: eval would rank near-ties
    )
    transformers.BertModel(config).save_pretrained(bert)
    vit = root / "vit"
    vit.mkdir()
    save_file(timm.create_model("vit_tiny_patch16_224").state_dict(), vit / "model.safetensors")
    configs = root / "configs"
    configs.mkdir()
    arch = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 224,
            "timm_model_name": "vit_tiny_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "linear",
            "timm_proj_bias": True,
        },
        "text_cfg": {
            "hf_model_name": "bert-base-uncased",  # as in the real config: --text-tower replaces it
            "hf_tokenizer_name": "bert-base-uncased",
            "hf_pooler_type": "all_positions_mean_pooler",
            "hf_proj_type": "linear",
            "context_length": 64,
        },
    }
    (configs / f"{TINY}.json").write_text(json.dumps(arch))
    register_model_configs()
    open_clip.add_model_config(configs)
    return {"bert": bert, "vit": vit}
