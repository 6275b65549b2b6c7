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
body's ``prompt_token_ids``, else each holder's own; with ``use: "sampled"`` none are read.
What stays unstated: lengths that must agree (legacy lists, ids per prompt entry), an id pairing
with the prompt entry at the same position, and which part ``use`` reads when a response has both.
"""

from typing import Any

DOCUMENT = "LogprobsDocument"
DOCUMENT_OWN_IDS = "LogprobsDocumentWithOwnIds"


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


def document(own_ids: bool) -> dict[str, Any]:
    """One item of `responses`; with `own_ids`, every prompt form carries its own token ids."""
    with_ids = [_ids()] if own_ids else []
    prompt = {
        "allOf": [
            {"required": ["prompt_logprobs"], "properties": {"prompt_logprobs": PROMPT_LIST}},
            *with_ids,
        ]
    }
    sampled = {
        "required": ["logprobs"],
        "properties": {"logprobs": PART, "prompt_logprobs": {"type": "null"}},
    }
    choice = {"type": "object", "anyOf": [prompt, sampled]}
    top_prompt = {"required": ["prompt_logprobs"], "properties": {"prompt_logprobs": PROMPT_LIST}}
    # With a top-level prompt_logprobs (a chat completion's prompt), a choice is read only for its own.
    own_prompt_only = {
        "type": "object",
        "anyOf": [{"properties": {"prompt_logprobs": {"type": "null"}}}, prompt],
    }
    response = {
        "type": "object",
        "required": ["choices"],
        "anyOf": [
            {"allOf": [top_prompt, *with_ids], "properties": {"choices": {"items": own_prompt_only}}},
            {
                "properties": {
                    "prompt_logprobs": {"type": "null"},
                    "choices": {"minItems": 1, "items": choice},
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
        "description": "A response, a choice's logprobs object, a chat content list or a vLLM "
        "prompt_logprobs list" + (" (prompt forms with their own prompt_token_ids)." if own_ids else "."),
        "anyOf": forms,
    }


def state_documents(schemas: dict[str, Any], bodies: tuple[str, ...]) -> None:
    """Type `responses` / `response` of the logprobs `bodies` by the documents read (:func:`document`)."""
    schemas[DOCUMENT], schemas[DOCUMENT_OWN_IDS] = document(own_ids=False), document(own_ids=True)
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
        # Without `prompt_token_ids` (and unless only sampled tokens are read), each prompt form
        # carries its own.
        no_ids = {"properties": {"prompt_token_ids": {"type": "null"}, "use": {"not": {"const": "sampled"}}}}
        own = {
            "properties": {
                "responses": {
                    "anyOf": [{"type": "array", "items": _ref(DOCUMENT_OWN_IDS)}, {"type": "null"}]
                },
                "response": {"anyOf": [_ref(DOCUMENT_OWN_IDS), {"type": "null"}]},
            }
        }
        body["allOf"] = [*body.get("allOf", []), {"if": no_ids, "then": own}]
