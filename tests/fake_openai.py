"""A real HTTP server on 127.0.0.1 that speaks OpenAI chat completions, with faults you can inject.

In a test (the server runs on its own event loop in a daemon thread):

    with FakeOpenAI(latency=0.01) as server:
        server.script = {"img-3": ["429", "500", "ok"]}      # requests whose prompt contains "img-3"
        ... AsyncOpenAI(base_url=server.url, api_key="x") ...
        server.stats()                                      # counts per fault, every request seen

As a process (the benchmark, or a CLI run under test):

    python tests/fake_openai.py --latency 0.1 --port 0     # prints the base URL on its first line
    python tests/fake_openai.py --latency 0.1 --max-concurrent 16   # a server that works on 16 at once
    POST <base>/_control {"latency": 0.1, "script": {...}, "faults": [...]}  ;  GET <base>/_stats

Faults: ok (a faithful description of the keypoints in the prompt, written by the rules describer for the
skeleton whose joints the system prompt lists) | 429
(retry-after-ms header) | 429s (Retry-After in whole seconds) | 500 | 401 (both echo the Authorization
header in their error text, as some proxies do) | slow (sleeps `slow_s` before answering) | drop (closes the
connection without a reply) | malformed (200 with a body that is not JSON) | empty (empty content) | length
(finish_reason "length") | refuse (a refusal text) | trickle (a good reply sent one byte every
`trickle_s`, head included, until the client hangs up) | the usages a broken endpoint reports (USAGE_FAULTS:
negative_usage, huge_usage, text_usage, float_usage, on an otherwise good reply) | no_usage (a good reply
without a usage), and the replies weak models give (BAD_REPLIES): json, mangled, echo, meta, measure, coords,
placeholder, list, count, invent, limb, contradict, short, offtopic.
Vision requests (a user message whose content is a list of text and image_url parts, as OpenAI takes them) are
checked as a provider would: a part of another type, an image_url without a url, a data URL that is not a
base64 image PIL can open, or an image with a side over `max_image_side` is answered 400; each image is
logged (kind, detail, format, size, sha256; the decoded bytes in `image_data[n]`). Their ok reply adds what
a vision model adds (clothes and scene, VISION_SCENE), and VISION_BAD_REPLIES (crowd, bystander, spectators)
add people the annotations do not have.
`script` maps a substring of the user message to the faults its successive requests get ("500*" repeats
forever); `faults` is a queue consumed by requests in arrival order; everything else gets `default`.
The Batch API (POST /v1/files, POST /v1/batches, GET /v1/batches/{id}, GET /v1/files/{id}/content) runs
each line through the same faults: 500/429 lines land in the error file, "expire" lines are reported as
batch_expired (and the batch as expired); a batch answers "in_progress" to its first
`batch_polls_to_finish` polls.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import json
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
_NUMBER_WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
# What small instruct models were seen to reply (paraphrased): each must end `invalid` at the gate.
BAD_REPLIES = (
    "json", "mangled", "echo", "meta", "measure", "coords", "placeholder", "list", "count", "invent", "limb",
    "contradict", "short", "offtopic",
)  # fmt: skip
VISION_BAD_REPLIES = ("crowd", "bystander", "spectators")
# Token counts a broken or hostile endpoint reports, merged over a good reply's usage.
USAGE_FAULTS = {
    "negative_usage": {"prompt_tokens": -1_000_000},
    "huge_usage": {"prompt_tokens": 10**13},
    "text_usage": {"completion_tokens": "many"},
    "float_usage": {"completion_tokens": 12.5},
}
VISION_SCENE = (
    "The photograph shows an indoor hall with a wooden floor and white walls; the person wears a dark "
    "jacket, grey trousers and white sneakers."
)
_FLIP = {
    "standing": "lying down", "sitting": "standing", "lying": "standing",
    "raised above their head": "lowered",
    "raised": "lowered", "lowered": "raised above their head", "lifted": "planted on the ground",
    "sharply bent": "straight", "slightly bent": "straight", "bent": "straight", "straight": "sharply bent",
    "upright": "horizontal", "leaning": "upright", "horizontal": "upright", "tilted": "upright",
    "bowed": "upright",
}  # fmt: skip
# What POST /_control may set.
_SETTABLE = ("latency", "slow_s", "trickle_s", "retry_after_ms", "default", "script", "faults")
_FLIP_RE = re.compile(r"\b(" + "|".join(sorted(_FLIP, key=len, reverse=True)) + r")\b")
_RULES = None


def _input(user: str) -> dict[str, Any]:
    """The paper's JSON input inside a user message ({} when there is none)."""
    start = user.find("{")
    try:
        return json.JSONDecoder().raw_decode(user[start:])[0] if start >= 0 else {}
    except ValueError:
        return {}


_ORDER = re.compile(r"in this order: ((?:\d+ [^,.]+(?:, )?)+)\.")


def _skeleton(system: str):
    """The skeleton whose joints the system prompt lists ("in this order: 0 nose, 1 left eye, ..."); MPII
    when it lists none."""
    from pipeline.skeletons import MPII, skeleton_for

    m = _ORDER.search(system)
    return skeleton_for([j.split(" ", 1)[1] for j in m.group(1).split(", ")]) if m else MPII


def _annotation(obj: dict[str, Any], system: str = ""):
    """The instances of a prompt's JSON as an ImageAnnotation (every given keypoint counts as visible)."""
    import numpy as np

    from pipeline.instances import plural
    from pipeline.records import ImageAnnotation, Person, empty_keypoints

    skeleton = _skeleton(system)
    people = []
    for p in obj.get(plural(skeleton.subject)) or []:
        kps = empty_keypoints(skeleton.num_joints)
        xy = np.asarray(p.get("keypoints", p.get("kpts")), dtype=np.float32).reshape(-1, 2)
        ok = (xy >= 0).all(axis=1)
        kps[ok, :2], kps[ok, 2] = xy[ok], 2
        center = tuple(p["center"]) if p.get("center") else None
        people.append(Person(keypoints=kps, center=center, label=p.get("label")))
    return ImageAnnotation(image="prompt", people=people, skeleton=skeleton)


def faithful(user: str, system: str = "") -> str:
    """What the rules describer writes for the keypoints in the prompt (no activity: the label is masked),
    for the skeleton the system prompt lists (MPII when it lists none)."""
    global _RULES
    from pipeline.describe.prompting import image_context, load_template
    from pipeline.describe.rules import rules_description
    from pipeline.facts import pose_facts

    _RULES = _RULES or load_template("rules")
    return rules_description(_RULES, image_context(pose_facts(_annotation(_input(user), system))))


def bad_reply(fault: str, user: str, system: str) -> str:
    """A realistic failed description of the prompt's people."""
    obj = _input(user)
    n = int(obj.get("count") or len(obj.get("people") or []) or 1)
    good = faithful(user, system)
    body = good.split(". ", 1)[1] if ". " in good else good
    kps = [p.get("keypoints", p.get("kpts")) for p in obj.get("people") or []]
    unknown_limb = next(
        (limb for limb, joints in (("left arm", (13, 14, 15)), ("right arm", (12, 11, 10)),
                                   ("left leg", (3, 4, 5)), ("right leg", (2, 1, 0)))
         if kps and all(kps[0][j][0] < 0 for j in joints)),
        "left arm",
    )  # fmt: skip
    return {
        "json": user,
        "mangled": '{"count":1,"people":[{"center":[765,396],[804,683],[741,512],"scale":3.02,"keypoints":'
        "[[620,394],[616,269],[573,185],[647,188],[661,221],[656,231],[610,187],[647,176]",
        "echo": system,
        "meta": "I'm an AI model designed to analyze and provide analysis on various topics. Based on the "
        "information you provided, the people in the image are engaged in an activity, and their body "
        "positions can be described in terms of their overall posture.",
        "measure": "This image shows one person. The head of the person is upright with a length of 17 "
        "inches from the chin to the top, and the left arm is about 60 cm long, hanging by their side. "
        "The person is 5'10\" tall and appears to be around 30 years old.",
        "coords": "The person is standing. The left wrist is at (804, 683) and the left elbow at (765, 396), "
        "so the left arm is bent and lowered; the right knee at (616, 269) is straight.",
        "placeholder": "This image shows <number> people doing <activity>. The left/right/center person is "
        "standing/sitting with their legs bent.",
        "list": "1. Number of people and activity: The image shows the people and the activity.\n"
        "2. General attributes of the activity: The activity involves the whole body.\n"
        "3. Left leg: The left leg is positioned relative to the right leg.\n"
        "4. Right arm: The right arm is placed in relation to the left arm.\n"
        "5. Torso and head: The torso and head are positioned relative to the others.",
        "count": f"This image shows {_NUMBER_WORDS[min(n + 2, 10)]} people. {body}",
        "invent": f"{good} Another person on the left is kneeling beside them, and another person on the "
        "right is sitting with their arms crossed.",
        "limb": f"{good} Their {unknown_limb} is raised high above their head and bent at the elbow.",
        "contradict": _FLIP_RE.sub(lambda m: _FLIP[m.group(1)], good),
        "short": "A person.",
        "offtopic": "What a lovely day to spend time outside! Everyone seems to be enjoying themselves and "
        "having a great time together with friends.",
        "crowd": f"{good} {VISION_SCENE} A crowd watches from the stands in the background.",
        "bystander": f"{good} {VISION_SCENE} Another man stands behind them, watching.",
        "spectators": f"{good} {VISION_SCENE} Two spectators sit on a bench nearby.",
    }[fault]


def user_text(content: Any) -> str:
    """A message's text: the string, or its text parts joined (a vision message is a list of parts)."""
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(texts)
    return content or ""


def billed_image_tokens(images: list[dict[str, Any]], model: str) -> int:
    """What a provider bills for the images (its usage counts them as prompt tokens): the documented formula
    of the model's family for a decoded image, the gpt-4o low-detail count for a URL it would fetch."""
    from pipeline.describe.image_tokens import family_for, image_tokens

    family = family_for(model) or "gpt-4o"
    return sum(image_tokens(*i["size"], i["detail"], family) if i["kind"] == "data" else 85 for i in images)


def read_images(content: Any, max_side: int | None) -> tuple[list[dict[str, Any]], list[bytes], str | None]:
    """(log entries, decoded bytes, None) of a message's image parts, or why a provider would refuse them."""
    from PIL import Image

    if not isinstance(content, list):
        return [], [], None
    entries, blobs = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if kind != "image_url":
            return [], [], f"unsupported content part {kind!r}"
        image = part.get("image_url") or {}
        url, detail = image.get("url"), image.get("detail", "auto")
        if not isinstance(url, str) or detail not in ("low", "high", "auto"):
            return [], [], "image_url needs a url and a detail of low, high or auto"
        if url.startswith(("http://", "https://")):
            entries.append({"kind": "url", "url": url, "detail": detail})
            continue
        head, _, data = url.partition(",")
        if not re.fullmatch(r"data:image/(jpeg|png|webp|gif);base64", head):
            return [], [], f"invalid image URL {url[:40]!r}"
        try:
            blob = base64.b64decode(data, validate=True)
            with Image.open(io.BytesIO(blob)) as im:
                im.load()
                fmt, size = im.format, im.size
        except (binascii.Error, ValueError, OSError) as err:
            return [], [], f"invalid image data ({type(err).__name__})"
        if max_side is not None and max(size) > max_side:
            return [], [], f"image {size[0]}x{size[1]} is over the {max_side} px limit"
        entries.append({"kind": "data", "detail": detail, "format": fmt, "size": list(size),
                        "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()})  # fmt: skip
        blobs.append(blob)
    return entries, blobs, None


class FakeOpenAI:
    def __init__(
        self,
        *,
        latency: float = 0.0,
        slow_s: float = 5.0,
        trickle_s: float = 0.5,
        retry_after_ms: int = 50,
        default: str = "ok",
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent: int | None = None,
    ):
        self.latency = latency
        # At most this many chat requests are worked on at once; the rest wait their turn (a GPU server's
        # batch size), so the server's rate is at most max_concurrent / latency.
        self.max_concurrent = max_concurrent
        self._slots: asyncio.Semaphore | None = None
        self.in_flight = 0  # chat requests received and not yet answered (waiting ones included)
        self.peak_in_flight = 0
        self.slow_s = slow_s
        self.trickle_s = trickle_s
        self.retry_after_ms = retry_after_ms
        self.default = default
        self.script: dict[str, list[str]] = {}
        self.faults: list[str] = []
        self.host, self.port = host, port
        self.requests: list[
            dict[str, Any]
        ] = []  # one entry per chat request: n, fault, user, system, model, t
        self.fault_counts: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._n = 0
        self.files: dict[str, bytes] = {}  # Batch API: uploaded and produced JSONL files
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls_to_finish = 1  # retrieves answered "in_progress" before a batch is finished
        self.max_image_side: int | None = None  # images larger than this are refused (400)
        self.image_data: dict[int, list[bytes]] = {}  # request n -> the images it carried, decoded

    # ---- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def serve(self) -> None:
        if self.max_concurrent:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> FakeOpenAI:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self.requests),
            "peak_in_flight": self.peak_in_flight,
            "faults": dict(self.fault_counts),
            "log": [dict(r) for r in self.requests],
        }

    # ---- behaviour --------------------------------------------------------------------------------
    def _pick_fault(self, user: str) -> str:
        for needle, seq in self.script.items():
            if needle in user and seq:
                fault = seq[0]
                if fault.endswith("*"):
                    return fault[:-1]
                seq.pop(0)
                return fault
        if self.faults:
            return self.faults.pop(0)
        return self.default

    def _reply(self, body: dict[str, Any], fault: str, images: list[dict[str, Any]] = ()) -> dict[str, Any]:
        messages = body.get("messages", [])
        raw = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        user, vision = user_text(raw), isinstance(raw, list)
        system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
        if fault in BAD_REPLIES + VISION_BAD_REPLIES:
            content = bad_reply(fault, user, system)
        else:
            content = faithful(user, system) + (f" {VISION_SCENE}" if vision else "")
        finish = "stop"
        if fault == "empty":
            content = ""
        elif fault == "length":
            content, finish = content[:30], "length"
        elif fault == "refuse":
            content = "I'm sorry, but I can't help with that request."
        prompt_tokens = sum(len(user_text(m.get("content", ""))) for m in messages) // 4 + 1
        prompt_tokens += billed_image_tokens(images, body.get("model") or "")
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(content) // 4 + 1,
            "total_tokens": prompt_tokens + len(content) // 4 + 1,
        }
        reply = {
            "id": f"chatcmpl-fake-{self._n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content}}
            ],
            "usage": usage | USAGE_FAULTS.get(fault, {}),
        }
        if fault == "no_usage":
            del reply["usage"]
        return reply

    async def _respond(
        self, writer: asyncio.StreamWriter, status: int, payload: bytes, headers: dict[str, str] | None = None
    ) -> None:
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "content-type: application/json",
            f"content-length: {len(payload)}",
            "connection: keep-alive",
        ]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()

    async def _trickle(self, writer: asyncio.StreamWriter, payload: bytes) -> None:
        """A 200 reply written one byte every trickle_s, its head too: every single read of the client gets
        a byte in time, so only a deadline on the whole attempt ends it. Stops when the client hangs up."""
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
        for byte in head.encode() + payload:
            if writer.is_closing():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(self.trickle_s)

    async def _chat(self, body: dict[str, Any], writer: asyncio.StreamWriter, auth: str = "") -> bool:
        """Answer one chat request (in turn, under max_concurrent); False when the connection must be
        dropped."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            async with self._slots or contextlib.nullcontext():
                return await self._answer(body, writer, auth)
        finally:
            self.in_flight -= 1

    async def _answer(self, body: dict[str, Any], writer: asyncio.StreamWriter, auth: str) -> bool:
        self._n += 1
        messages = body.get("messages", [])
        raw = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        user = user_text(raw)
        images, blobs, refused = read_images(raw, self.max_image_side)
        if refused:
            self.requests.append({"n": self._n, "fault": "400", "user": user, "model": body.get("model"),
                                  "t": time.time(), "refused": refused})  # fmt: skip
            err = {"error": {"message": f"Invalid image: {refused} (fake)", "type": "invalid_request_error"}}
            await self._respond(writer, 400, json.dumps(err).encode())
            return True
        if blobs:
            self.image_data[self._n] = blobs
        fault = self._pick_fault(user)
        self.fault_counts[fault] += 1
        self.requests.append(
            {
                "n": self._n,
                "fault": fault,
                "user": user,
                "system": next(
                    (m.get("content", "") for m in body.get("messages", []) if m.get("role") == "system"), ""
                ),
                "model": body.get("model"),
                "t": time.time(),
                "seed": body.get("seed"),
                "temperature": body.get("temperature"),
                "images": images,
            }  # fmt: skip
        )
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "drop":
            return False
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault in ("429", "429s"):
            headers = (
                {"retry-after-ms": str(self.retry_after_ms)}
                if fault == "429"
                else {"retry-after": str(max(1, round(self.retry_after_ms / 1000)))}
            )
            err = {
                "error": {"message": "Rate limit reached (fake)", "type": "rate_limit_error", "code": None}
            }
            await self._respond(writer, 429, json.dumps(err).encode(), headers)
        elif fault == "401":
            err = {"error": {"message": f"Incorrect API key provided (fake): {auth}", "type": "auth_error"}}
            await self._respond(writer, 401, json.dumps(err).encode())
        elif fault == "500":
            err = {
                "error": {
                    "message": f"The server had an error (fake); request headers: Authorization: {auth}",
                    "type": "server_error",
                }
            }
            await self._respond(writer, 500, json.dumps(err).encode())
        elif fault == "trickle":
            await self._trickle(writer, json.dumps(self._reply(body, "ok", images)).encode())
        elif fault == "malformed":
            await self._respond(writer, 200, b'{"id": "chatcmpl-broken", "choices": [{"message": ')
        else:
            await self._respond(writer, 200, json.dumps(self._reply(body, fault, images)).encode())
        return True

    # ---- Batch API: files + batches; lines go through the same faults as single requests ------------
    async def _json(self, writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        await self._respond(writer, 200, json.dumps(obj).encode())

    def _upload(self, raw: bytes, content_type: str) -> dict[str, Any]:
        boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
        for part in raw.split(b"--" + boundary):
            head, _, data = part.partition(b"\r\n\r\n")
            if b'name="file"' in head:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = data.removesuffix(b"\r\n")
                return {
                    "id": file_id,
                    "object": "file",
                    "bytes": len(self.files[file_id]),
                    "created_at": 0,
                    "filename": "input.jsonl",
                    "purpose": "batch",
                    "status": "processed",
                }
        raise ValueError("multipart upload without a file part")

    def _batch_obj(self, b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    async def _create_batch(self, req: dict[str, Any]) -> dict[str, Any]:
        batch_id = f"batch-{len(self.batches) + 1}"
        out, err, expired = [], [], 0
        for line in self.files[req["input_file_id"]].decode().splitlines():
            item = json.loads(line)
            self._n += 1
            body = item["body"]
            raw = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
            user = user_text(raw)
            images, blobs, refused = read_images(raw, self.max_image_side)
            if blobs:
                self.image_data[self._n] = blobs
            fault = "400" if refused else self._pick_fault(user)
            self.fault_counts[fault] += 1
            self.requests.append(
                {
                    "n": self._n,
                    "fault": fault,
                    "user": user,
                    "model": body.get("model"),
                    "t": time.time(),
                    "batch": batch_id,
                    "images": images,
                }
            )
            if fault == "expire":
                expired += 1
                err.append(
                    {
                        "id": None,
                        "custom_id": item["custom_id"],
                        "response": None,
                        "error": {"code": "batch_expired", "message": "not completed within 24h (fake)"},
                    }
                )
            elif fault in ("500", "429", "400"):
                code = int(fault)
                err.append(
                    {
                        "id": f"req-{self._n}",
                        "custom_id": item["custom_id"],
                        "error": None,
                        "response": {
                            "status_code": code,
                            "request_id": f"req-{self._n}",
                            "body": {"error": {"message": f"fake {code}", "type": "server_error"}},
                        },
                    }
                )
            else:
                out.append(
                    {
                        "id": f"req-{self._n}",
                        "custom_id": item["custom_id"],
                        "error": None,
                        "response": {
                            "status_code": 200,
                            "request_id": f"req-{self._n}",
                            "body": self._reply(body, fault, images),
                        },
                    }
                )
        files = {}
        for kind, lines in (("output_file_id", out), ("error_file_id", err)):
            if lines:
                files[kind] = f"file-{len(self.files) + 1}"
                self.files[files[kind]] = "".join(json.dumps(x) + "\n" for x in lines).encode()
        total = len(out) + len(err)
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": req["endpoint"],
            "errors": None,
            "input_file_id": req["input_file_id"],
            "completion_window": req["completion_window"],
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": {"total": total, "completed": 0, "failed": 0},
            "_final": {
                "status": "expired" if expired else "completed",
                **files,
                "request_counts": {"total": total, "completed": len(out), "failed": len(err)},
            },
            "_polls": 0,
        }
        return self._batch_obj(self.batches[batch_id])

    def _poll_batch(self, batch_id: str) -> dict[str, Any]:
        b = self.batches[batch_id]
        b["_polls"] += 1
        if b["_polls"] > self.batch_polls_to_finish:
            b.update(b["_final"])
        else:
            b["status"] = "in_progress"
        return self._batch_obj(b)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)
                }
                raw = await reader.readexactly(int(headers.get("content-length", 0)))
                path = path.split("?", 1)[0]
                if method == "POST" and path.endswith("/chat/completions"):
                    if not await self._chat(
                        json.loads(raw or b"{}"), writer, headers.get("authorization", "")
                    ):
                        return
                elif method == "POST" and path.endswith("/v1/files"):
                    await self._json(writer, self._upload(raw, headers.get("content-type", "")))
                elif method == "GET" and "/v1/files/" in path and path.endswith("/content"):
                    await self._respond(writer, 200, self.files[path.split("/")[-2]])
                elif method == "POST" and path.endswith("/v1/batches"):
                    await self._json(writer, await self._create_batch(json.loads(raw)))
                elif method == "GET" and "/v1/batches/" in path:
                    await self._json(writer, self._poll_batch(path.rsplit("/", 1)[-1]))
                elif path.endswith("/_stats"):
                    await self._respond(writer, 200, json.dumps(self.stats()).encode())
                elif method == "POST" and path.endswith("/_control"):
                    ctl = json.loads(raw or b"{}")
                    for key in _SETTABLE:
                        if key in ctl:
                            setattr(self, key, ctl[key])
                    await self._respond(writer, 200, b"{}")
                else:
                    await self._respond(writer, 404, b'{"error": {"message": "not found"}}')
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # CancelledError on stop: ending quietly keeps asyncio's stream callback from logging it
        finally:
            writer.close()


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the ok reply uses the pipeline package
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every reply")
    parser.add_argument("--default", default="ok", help="fault for requests nothing else picks")
    parser.add_argument("--max-concurrent", type=int, default=None, help="requests worked on at once")
    args = parser.parse_args()
    server = FakeOpenAI(
        latency=args.latency, default=args.default, port=args.port, max_concurrent=args.max_concurrent
    )

    async def run() -> None:
        await server.serve()
        print(server.url, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
