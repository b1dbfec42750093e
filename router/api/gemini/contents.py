"""Gemini `contents` and `systemInstruction` -> OpenAI chat messages (the mapping is
listed in request.py). Function calls and responses are paired here: Gemini's ids are
optional, OpenAI's tool_call_id is not."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from router.api.gemini.fields import bad
from router.api.gemini.fields import obj as _obj


def _inline(part: dict[str, Any], where: str) -> dict[str, Any]:
    blob = _obj(part, where)
    mime, data = blob.get("mimeType"), blob.get("data")
    if not isinstance(mime, str) or not isinstance(data, str) or not data:
        raise bad(f"{where}: inlineData needs 'mimeType' and base64 'data'", where)
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    if mime.startswith("text/") or mime in ("application/json", "application/xml"):
        try:
            return {"type": "text", "text": base64.b64decode(data, validate=True).decode("utf-8")}
        except (binascii.Error, UnicodeDecodeError):
            raise bad(f"{where}.data: not base64 of UTF-8 text", where) from None
    raise bad(f"{where}.mimeType: {mime!r} is not supported here (images and text only)", where)


def _file(part: dict[str, Any], where: str) -> dict[str, Any]:
    f = _obj(part, where)
    uri, mime = f.get("fileUri"), f.get("mimeType") or ""
    if isinstance(uri, str) and uri.startswith(("http://", "https://")) and str(mime).startswith("image/"):
        return {"type": "image_url", "image_url": {"url": uri}}
    raise bad(f"{where}: fileData is supported for http(s) image URLs only (uploaded files are Google's)", where)


def _response_text(fr: dict[str, Any], where: str) -> str:
    resp = fr.get("response", {})
    if isinstance(resp, str):
        text = resp
    elif isinstance(resp, dict):
        text = json.dumps(resp, ensure_ascii=False)
    else:
        raise bad(f"{where}.response: must be an object", where)
    extra = fr.get("parts")
    if extra:
        if not isinstance(extra, list):
            raise bad(f"{where}.parts: must be a list", where)
        for i, p in enumerate(extra):
            p = _obj(p, f"{where}.parts.{i}")
            if not isinstance(p.get("text"), str):
                # OpenAI's tool messages carry text only
                raise bad(f"{where}.parts.{i}: only text parts are supported in a functionResponse", where)
            text += "\n" + p["text"]
    return text


class _Calls:
    """The function calls of the latest model turn still waiting for a response:
    Gemini ids are optional, OpenAI's tool_call_id is not."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str]] = []  # (id, name)

    def take(self, fr: dict[str, Any], where: str) -> str:
        fid, name = fr.get("id"), fr.get("name")
        for i, (cid, cname) in enumerate(self.pending):
            if fid and cid == fid:
                return self.pending.pop(i)[0]
        for i, (cid, cname) in enumerate(self.pending):
            if cname == name:
                return self.pending.pop(i)[0]
        raise bad(f"{where}: functionResponse {name!r} answers no functionCall of the model turn before it", where)


def _content(c: Any, i: int, calls: _Calls) -> list[dict[str, Any]]:
    where = f"contents[{i}]"
    c = _obj(c, where)
    role = c.get("role") or "user"
    if role not in ("user", "model", "function"):
        raise bad(f"{where}.role: must be 'user' or 'model', got {role!r}", where)
    parts = c.get("parts")
    if not isinstance(parts, list) or not parts:
        raise bad(f"{where}.parts: must be a non-empty list", where)
    content: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    tool_msgs: list[dict[str, Any]] = []
    model = role == "model"
    for j, p in enumerate(parts):
        pw = f"{where}.parts[{j}]"
        p = _obj(p, pw)
        if "text" in p:
            if not isinstance(p["text"], str):
                raise bad(f"{pw}.text: must be a string", pw)
            if p.get("thought") is True:
                continue  # earlier turns' thinking is not sent upstream again
            content.append({"type": "text", "text": p["text"]})
        elif "functionCall" in p and model:
            fc = _obj(p["functionCall"], f"{pw}.functionCall")
            name, args = fc.get("name"), fc.get("args", {})
            if not isinstance(name, str) or not name:
                raise bad(f"{pw}.functionCall.name: required", pw)
            if not isinstance(args, dict):
                raise bad(f"{pw}.functionCall.args: must be an object", pw)
            cid = fc.get("id") if isinstance(fc.get("id"), str) and fc.get("id") else f"call_{i}_{j}"
            tool_calls.append({"id": cid, "type": "function",
                               "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}})  # fmt: skip
        elif "functionResponse" in p and not model:
            fr = _obj(p["functionResponse"], f"{pw}.functionResponse")
            cid = calls.take(fr, pw)
            tool_msgs.append({"role": "tool", "tool_call_id": cid, "content": _response_text(fr, pw)})
        elif "inlineData" in p and not model:
            content.append(_inline(p["inlineData"], f"{pw}.inlineData"))
        elif "fileData" in p and not model:
            content.append(_file(p["fileData"], f"{pw}.fileData"))
        elif set(p) <= {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}:
            continue  # a bare thought signature: bookkeeping of Google's models
        else:
            kinds = ", ".join(sorted(set(p) - {"thought", "thoughtSignature"})) or "empty"
            raise bad(f"{pw}: part ({kinds}) is not supported in a {role} turn", pw)
    if model:
        calls.pending = [(tc["id"], tc["function"]["name"]) for tc in tool_calls]
        if not content and not tool_calls:
            return []  # a turn of thoughts only
        text = "".join(x["text"] for x in content if x["type"] == "text")
        # "" beside tool_calls, not null: llama.cpp's server takes a string only
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            msg["tool_calls"] = tool_calls
        return [msg]
    out: list[dict[str, Any]] = list(tool_msgs)  # tool results right after their call, as OpenAI wants
    if content:
        only_text = len(content) == 1 and content[0]["type"] == "text"
        out.append({"role": "user", "content": content[0]["text"] if only_text else content})
    return out


def system_text(si: Any) -> str:
    if isinstance(si, str):
        return si
    si = _obj(si, "systemInstruction")
    parts = si.get("parts")
    if not isinstance(parts, list):
        raise bad("systemInstruction.parts: must be a list", "systemInstruction")
    texts = []
    for i, p in enumerate(parts):
        p = _obj(p, f"systemInstruction.parts[{i}]")
        if not isinstance(p.get("text"), str):
            raise bad(f"systemInstruction.parts[{i}]: only text parts are supported", "systemInstruction")
        texts.append(p["text"])
    return "\n".join(texts)


def messages_of(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAI messages of a (camelCased) request body; also for countTokens."""
    contents = d.get("contents")
    if not isinstance(contents, list) or not contents:
        raise bad("contents: must be a non-empty list", "contents")
    out: list[dict[str, Any]] = []
    if d.get("systemInstruction") is not None:
        system = system_text(d["systemInstruction"])
        if system:
            out.append({"role": "system", "content": system})
    calls = _Calls()
    for i, c in enumerate(contents):
        out.extend(_content(c, i, calls))
    if not any(m["role"] != "system" for m in out):
        raise bad("contents: no turn has content the model can read", "contents")
    return out
