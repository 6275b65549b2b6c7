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
What ``use`` asks of a response is stated as closed alternatives of the body (:func:`_reading`).
What stays unstated: lengths that must agree (legacy lists, ids per prompt entry), an id pairing
with the prompt entry at the same position, and on a monitor's sequences body ``use: "prompt"``
finding a prompt in each response.
"""

from typing import Any

from service.core.language.logprob_metrics import MAX_LOGPROB

DOCUMENT = "LogprobsDocument"
DOCUMENT_OWN_IDS = "LogprobsDocumentWithOwnIds"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


#: A log-probability: at most 0, within the server's slack for printing (MAX_LOGPROB).
_NUMBER = {"type": "number", "maximum": MAX_LOGPROB}
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
        # an echoed prompt starts with null (its first token has no logprob); no later one is null
        "token_logprobs": {"type": "array", "prefixItems": [{"type": ["number", "null"]}], "items": _NUMBER},
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


def _prompt_sent() -> dict[str, Any]:
    return {"required": ["prompt_logprobs"], "properties": {"prompt_logprobs": {"not": {"type": "null"}}}}


#: What ``use`` asks of a response (an object with ``choices``; other documents are read whatever
#: ``use`` says). "sampled": every choice has its ``logprobs`` (prompts are not read); "prompt":
#: a ``prompt_logprobs`` at the top or in a choice (choices without one are skipped).
USE_SAMPLED = "LogprobsResponseForSampled"
#: The body where ``use: "prompt"`` is stated too (see :func:`_reading`).
PROMPT_USE_STATED = "LogprobsBody"
USE_PROMPT = "LogprobsResponseForPrompt"
_USE: dict[str, dict[str, Any]] = {
    USE_SAMPLED: {
        "description": 'With `use: "sampled"`, a response\'s every choice has its `logprobs` '
        "(chat or legacy).",
        "properties": {
            "choices": {
                "minItems": 1,
                "items": {"required": ["logprobs"], "properties": {"logprobs": PART}},
            }
        },
    },
    USE_PROMPT: {
        "description": 'With `use: "prompt"`, a response has a `prompt_logprobs`, at the top or in a choice.',
        "anyOf": [
            {"properties": {"choices": False}},
            _prompt_sent(),
            {"properties": {"choices": {"contains": _prompt_sent()}}},
        ],
    },
}


def _reads(name: str) -> dict[str, Any]:
    """`responses` / `response` read as the component `name` says (when sent)."""
    return {
        "responses": {"anyOf": [{"type": "null"}, {"items": _ref(name)}]},
        "response": {"anyOf": [{"type": "null"}, _ref(name)]},
    }


def _reading(own: dict[str, Any], prompt: bool) -> dict[str, Any]:
    """How the body's documents are read, by ``use`` and ``prompt_token_ids``, as closed alternatives.

    "sampled": every response's choices have their ``logprobs`` (no prompt ids are read); else the
    prompt forms carry their own ids unless the body sends them (`own`); with `prompt`, also
    ``use: "prompt"`` finds a prompt in each response (one ``anyOf`` of five: a generator pays for
    each disjunction, and the sequences body, with its two forms, has no room for that one).
    """
    ids_sent = {
        "required": ["prompt_token_ids"],
        "properties": {"prompt_token_ids": {"not": {"type": "null"}}},
    }
    ids_null = {"properties": {"prompt_token_ids": {"type": "null"}, **own}}
    sampled = {"required": ["use"], "properties": {"use": {"const": "sampled"}, **_reads(USE_SAMPLED)}}
    if not prompt:
        other = {"properties": {"use": {"not": {"const": "sampled"}}}}
        return {"anyOf": [sampled, {"allOf": [other, ids_sent]}, {"allOf": [other, ids_null]}]}
    for_prompt = {"required": ["use"], "properties": {"use": {"const": "prompt"}, **_reads(USE_PROMPT)}}
    auto = {"properties": {"use": {"enum": ["auto", None]}}}
    return {
        "anyOf": [
            sampled,
            *({"allOf": [reading, ids]} for reading in (for_prompt, auto) for ids in (ids_sent, ids_null)),
        ]
    }


def state_documents(schemas: dict[str, Any], bodies: tuple[str, ...]) -> None:
    """Type `responses` / `response` of the logprobs `bodies` by the documents read (:func:`document`)."""
    schemas[DOCUMENT], schemas[DOCUMENT_OWN_IDS] = document(own_ids=False), document(own_ids=True)
    schemas.update(_USE)
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
        own = {
            "responses": {"anyOf": [{"type": "array", "items": _ref(DOCUMENT_OWN_IDS)}, {"type": "null"}]},
            "response": {"anyOf": [_ref(DOCUMENT_OWN_IDS), {"type": "null"}]},
        }
        body["allOf"] = [*body.get("allOf", []), _reading(own, prompt=name == PROMPT_USE_STATED)]
