"""The OpenAI / vLLM documents ``/v1/logprobs`` reads, as JSON Schema (``LogprobsDocument``).

Each item of `responses` (or the one `response`) is, as :func:`service.core.parse_logprobs`
reads it:

- a chat ``content`` list of ``{token, logprob, bytes, top_logprobs}`` objects;
- a vLLM ``prompt_logprobs`` list: ``null`` or an entry first, then entries, each an object keyed
  by token ids (``"1234"``) whose values hold a numeric ``logprob``;
- a response object with ``choices`` (each choice with its ``prompt_logprobs``, else its
  ``logprobs``; a chat completion's top-level ``prompt_logprobs`` stands for the choices);
- an object with ``prompt_logprobs`` (and no ``choices``);
- a choice's ``logprobs`` object: chat (``content``) or legacy completions (``token_logprobs``).

The prompt forms need the prompt's token ids (vLLM does not mark the realised token): sent as the
body's ``prompt_token_ids``, else each holder's own. ``use`` says which part of a response is read
(``"prompt"``: its prompt_logprobs, ``"sampled"``: its choices' logprobs, ``"auto"``: a prompt where
there is one): one variant of the document per `use`, with and without own ids.
What stays unstated: lengths that must agree (legacy lists, ids per prompt entry) and an id
pairing with the prompt entry at the same position.
"""

from typing import Any

DOCUMENT = "LogprobsDocument"
USES = ("auto", "prompt", "sampled")


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


_NUMBER = {"type": "number"}
_ALTERNATIVE = {"type": "object", "required": ["token", "logprob"], "properties": {"logprob": _NUMBER}}
CHAT_TOKEN = {
    "type": "object",
    "description": "A chat completion's token: `{token, logprob, bytes, top_logprobs}`.",
    "required": ["token", "logprob"],
    "properties": {
        "logprob": _NUMBER,
        "bytes": {"type": ["array", "null"]},
        # absent, or any JSON value Python reads as false, stands for no alternatives
        "top_logprobs": {
            "anyOf": [{"type": "array", "items": _ALTERNATIVE}, {"enum": [None, False, 0, "", {}]}]
        },
    },
}
CHAT_CONTENT = {"type": "array", "items": CHAT_TOKEN}
PROMPT_ENTRY = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"pattern": "^[0-9]+$"},
    "additionalProperties": {"type": "object", "required": ["logprob"], "properties": {"logprob": _NUMBER}},
}
PROMPT_LIST = {
    "type": "array",
    "description": "vLLM `prompt_logprobs`: null (the first token) or an entry, then entries.",
    "prefixItems": [{"anyOf": [{"type": "null"}, PROMPT_ENTRY]}],
    "items": PROMPT_ENTRY,
}
LEGACY = {
    "type": "object",
    "required": ["token_logprobs"],
    "properties": {
        "content": False,
        "token_logprobs": {"type": "array", "items": {"type": ["number", "null"]}},
        "tokens": {"type": ["array", "null"]},
        "top_logprobs": {
            "anyOf": [{"type": "null"}, {"type": "array", "items": {"type": ["object", "null"]}}]
        },
    },
}
PART = {
    "anyOf": [{"type": "object", "required": ["content"], "properties": {"content": CHAT_CONTENT}}, LEGACY]
}


def _ids() -> dict[str, Any]:
    """A holder of prompt_logprobs that carries its own `prompt_token_ids`."""
    return {"required": ["prompt_token_ids"], "properties": {"prompt_token_ids": {"type": "array"}}}


def document(own_ids: bool, use: str = "auto") -> dict[str, Any]:
    """One item of `responses` read with `use`; with `own_ids`, each prompt form read carries its ids."""
    with_ids = [_ids()] if own_ids else []
    prompt = {
        "allOf": [
            {"required": ["prompt_logprobs"], "properties": {"prompt_logprobs": PROMPT_LIST}},
            *with_ids,
        ]
    }
    sampled = {"required": ["logprobs"], "properties": {"logprobs": PART}}
    top_prompt = {
        "allOf": [
            {"required": ["prompt_logprobs"], "properties": {"prompt_logprobs": PROMPT_LIST}},
            *with_ids,
        ]
    }
    # A choice's own prompt_logprobs, when not null, is read (but with use "sampled").
    own_prompt_only = {
        "type": "object",
        "anyOf": [{"properties": {"prompt_logprobs": {"type": "null"}}}, prompt],
    }
    if use == "sampled":  # only the choices' logprobs are read
        response: dict[str, Any] = {
            "type": "object",
            "required": ["choices"],
            "properties": {
                "choices": {"type": "array", "minItems": 1, "items": {"type": "object", **sampled}}
            },
        }
    elif use == "prompt":  # only prompt_logprobs are read, at least one
        response = {
            "type": "object",
            "required": ["choices"],
            "properties": {"choices": {"type": "array", "items": own_prompt_only}},
            "anyOf": [top_prompt, {"properties": {"choices": {"contains": prompt}}}],
        }
    else:  # a prompt where there is one, else the sampled tokens
        no_prompt = {
            "properties": {"logprobs": PART, "prompt_logprobs": {"type": "null"}},
            "required": ["logprobs"],
        }
        response = {
            "type": "object",
            "required": ["choices"],
            "anyOf": [
                {"allOf": [top_prompt], "properties": {"choices": {"items": own_prompt_only}}},
                {
                    "properties": {
                        "prompt_logprobs": {"type": "null"},
                        "choices": {"minItems": 1, "items": {"type": "object", "anyOf": [prompt, no_prompt]}},
                    }
                },
            ],
            "properties": {"choices": {"type": "array"}},
        }
    holder = {
        "type": "object",
        "allOf": [
            {
                "required": ["prompt_logprobs"],
                "properties": {"choices": False, "prompt_logprobs": PROMPT_LIST},
            },
            *with_ids,
        ],
    }
    part = {"allOf": [PART, {"properties": {"choices": False, "prompt_logprobs": False}}]}
    forms: list[dict[str, Any]] = [CHAT_CONTENT, response, holder, part]
    if not own_ids:
        forms.insert(1, PROMPT_LIST)
    return {
        "description": f"A response (read with use {use!r}), a choice's logprobs object, a chat content "
        "list or a vLLM prompt_logprobs list"
        + (" (prompt forms with their own prompt_token_ids)." if own_ids else "."),
        "anyOf": forms,
    }


def _variant(use: str, own_ids: bool) -> str:
    return f"LogprobsDocument{use.capitalize()}{'WithOwnIds' if own_ids else ''}"


def _items(name: str) -> dict[str, Any]:
    return {
        "properties": {
            "responses": {"anyOf": [{"type": "array", "items": _ref(name)}, {"type": "null"}]},
            "response": {"anyOf": [_ref(name), {"type": "null"}]},
        }
    }


def state_documents(schemas: dict[str, Any], bodies: tuple[str, ...]) -> None:
    """Type `responses` / `response` of the logprobs `bodies` by the documents read (:func:`document`)."""
    for use in USES:
        for own_ids in (False, True):
            schemas[_variant(use, own_ids)] = document(own_ids, use)
    any_document = {"anyOf": [_ref(_variant(use, False)) for use in USES]}
    schemas[DOCUMENT] = {"description": "A logprobs document, read with any `use`.", **any_document}
    # Without `prompt_token_ids`, each prompt form read carries its own; `use` says which are read.
    no_ids = {"properties": {"prompt_token_ids": {"type": "null"}}}

    def by_ids(use: str) -> dict[str, Any]:
        return {"if": no_ids, "then": _items(_variant(use, True)), "else": _items(_variant(use, False))}

    def is_use(use: str) -> dict[str, Any]:
        return {"required": ["use"], "properties": {"use": {"const": use}}}

    rule = {
        "if": is_use("sampled"),
        "then": by_ids("sampled"),
        "else": {"if": is_use("prompt"), "then": by_ids("prompt"), "else": by_ids("auto")},
    }
    for name in bodies:
        body = schemas.get(name)
        if body is None:
            continue
        properties = body["properties"]
        properties["responses"] = {
            **properties["responses"],
            "anyOf": [{"type": "array", "minItems": 1, "items": _ref(DOCUMENT)}, {"type": "null"}],
        }
        properties["response"] = {**properties["response"], "anyOf": [_ref(DOCUMENT), {"type": "null"}]}
        body["allOf"] = [*body.get("allOf", []), rule]
