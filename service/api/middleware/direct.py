"""The whole exchange of a small JSON scoring POST in one coroutine, past the general layers.

Most requests to the scoring routes are small JSON bodies sent in one piece: a 32×10 batch
is scored in tens of µs, and passing it through the general layer (:class:`.exchange.ExchangeMiddleware`:
one closure per request around ``send``, the limits' inline runner and its timer, the
dispatch, Starlette's body reading, the response object's own ``__call__``) cost more than
the scoring. :class:`DirectScoring` does for such a request, in one pass, exactly what those
layers do:

1. reads the headers once: request id, Content-Length, Content-Type, the codings;
2. reads the body's first message (bounded by the compute deadline, as a slow upload is:
   :class:`~.deadline_watch.DeadlineWatch`);
3. checks the API key (401/403) and the limits (draining, concurrency: 503);
4. with a slot held and the deadline set, parses and scores it as the route's own endpoint
   would (:func:`service.api.deps.scoring`) — a plain request (:class:`service.api.deps.Plain`)
   from the route's plain answer — answering errors with the app's problem+json handlers;
5. sends the answer (gzipped when the client accepts it and it is over ~1 KB) with its
   ``X-Request-ID``, then hands the :class:`~.exchange.Exchange` to the metrics and the
   access log.

A monitor's small write (a POST route with a name in its path whose :class:`~.dispatch.DirectEntry`
takes the body on the event loop now: ``…/observations`` while the store commits without
blocking) is served here too, by its direct endpoint (:meth:`DirectScoring._written`): the same
steps, its awaited write under the deadline, as the limits layer's inline runner bounds it
(:meth:`~.limits.LimitsMiddleware._run_inline`) but on the shared watch's timer, which cancels
the request's task within a period of the deadline and answers 503; a write cancelled before
its turn's commit is dropped unwritten.

Anything else goes to the general layer unchanged, before a byte of the body is read: another
path or method, a body over the route's on-loop bound or the body limit, or of unknown
length, another media type, a coded body, the OIP binary header, CORS configured. So does a
request that turns out otherwise once its body is read (its body came in pieces; the route
sends this body to a worker thread): its first message is replayed to the general layer, which
then serves it from the start.
"""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.core.cancel import DEADLINE, Cancelled

from ..deps import DIRECT_BODY, DirectRoute, RawBody
from ..formats.json_keys import check_unique_keys
from ..formats.payload import parse_json_object
from ..formats.plain import numbers_only
from .codings import accepts_gzip
from .deadline_watch import DeadlineWatch
from .dispatch import Endpoint, Handler, NamedPost, NamedPosts, handler_for, problem_handlers
from .exchange import Exchange, internal_error
from .replies import Replay, Reply
from .request_ids import REQUEST_ID_HEADER, SANE_ID, new_id

if TYPE_CHECKING:
    from .exchange import ExchangeMiddleware

#: Content-Type values served here as JSON (as is a body without one); any other goes to the general layer.
JSON_TYPES = frozenset(
    {b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8"}
)


def small_json(scope: Scope, bound: int) -> tuple[int, str | None, bool] | None:
    """A JSON body's declared length, the request id sent and whether gzip is accepted.

    The headers read as one dict; None if the body is not plain JSON of a declared length
    within `bound` (another media type, a content coding, the OIP binary header), or if a
    header is repeated (the general layer reads every one of them).
    """
    raw = scope["headers"]
    headers = dict(raw)
    if len(headers) != len(raw):
        return None
    length = headers.get(b"content-length")
    if length is None or not length.isdigit() or int(length) > bound:
        return None
    kind = headers.get(b"content-type")
    if kind is not None and kind not in JSON_TYPES:
        return None
    if b"content-encoding" in headers or b"inference-header-content-length" in headers:
        return None
    identifier = headers.get(REQUEST_ID_HEADER)
    coding = headers.get(b"accept-encoding")
    return (
        int(length),
        identifier.decode() if identifier is not None and SANE_ID.fullmatch(identifier) else None,
        coding is not None and accepts_gzip(coding),
    )


class DirectScoring:
    """Small JSON POSTs to the scoring routes served whole here; anything else goes to `layer`.

    `routes` maps paths to the scoring routes (those whose endpoint carries a
    :class:`DirectRoute`); `handlers` are the app's exception handlers (problem+json); `named`,
    the POST routes with a name in their path, of which those with an on-loop bound are served
    here while it admits the body.
    """

    def __init__(
        self,
        layer: "ExchangeMiddleware",
        routes: Mapping[str, APIRoute],
        handlers: Mapping[Any, Handler],
        named: Sequence[NamedPost] = (),
    ) -> None:
        self.layer = layer
        self.routes: dict[str, tuple[APIRoute, DirectRoute, int]] = {
            path: (route, spec, min(spec.on_loop, layer.max_body_bytes))
            for path, route in routes.items()
            if isinstance(spec := getattr(route.endpoint, "direct_scoring", None), DirectRoute)
        }
        self.named = named if isinstance(named, NamedPosts) else NamedPosts(named)
        self.handlers = problem_handlers(handlers)
        self.watch = DeadlineWatch(layer.timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a small JSON scoring POST or named write here; pass anything else to the general layer."""
        layer = self.layer
        http_post = scope["type"] == "http" and scope["method"] == "POST"
        found = self.routes.get(scope["path"]) if http_post else None
        target: DirectRoute | NamedPost
        if found is not None:
            route, target, bound = found
            plain = small_json(scope, bound)
            path_params: dict[str, str] = {}
        elif http_post and self.named and (write := self._named(scope)) is not None:
            target, name, plain = write
            route, path_params = target.route, {"name": name}
        else:
            plain = None
        if plain is None:
            await layer(scope, receive, send)
            return
        length, identifier, gzip_ok = plain
        due = time.monotonic() + layer.timeout  # the request's deadline runs from its arrival
        message = await self.watch.first_message(receive, due)
        whole = (
            message is not None and message["type"] == "http.request" and not message.get("more_body", False)
        )
        if isinstance(target, DirectRoute) and message is not None and not whole:
            await layer(scope, Replay(message, receive), send)  # not one piece: served from the start there
            return
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        identifier = identifier or new_id()
        state["request_id"] = identifier
        state["declared_length"] = length
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, path_params
        exchange = Exchange("POST", scope["path"])
        reply = Reply(send, exchange, (REQUEST_ID_HEADER, identifier.encode()), gzip_ok)
        observed = False  # by the metrics and the log: here, or by the general layer it was handed to
        try:
            if message is None:  # the deadline passed before the body came
                response = layer.timeout_refusal(scope)
            elif (refusal := self._refusal(scope)) is not None:  # the key, draining, the concurrency cap
                response = refusal
            elif isinstance(target, DirectRoute):
                answer = self._answer(scope, receive, send, target, message["body"], due)
                if isinstance(answer, tuple):  # a plain request's answer (200, JSON) and its rows
                    await reply.json(answer[0])
                    exchange.route, exchange.rows = route.path, answer[1]
                    exchange.bytes_in = len(message["body"])
                    observed = True
                    layer.finish(exchange, scope)
                    return
                if answer is None:  # the route sends this body to a worker thread: served there
                    observed = True
                    await layer(scope, Replay(message, receive), send)
                    return
                response = answer if isinstance(answer, Response) else await answer
            else:
                body = message.get("body", b"")
                if whole and len(body) <= layer.max_body_bytes:
                    # whole, JSON, within the limit: the route takes it as read (`deps.DIRECT_BODY`)
                    state[DIRECT_BODY] = bytearray(body)
                response = await self._written(scope, Replay(message, receive), send, target.endpoint, due)
            await reply(response)
        except Exception:
            if reply.started:  # too late for a 500: let the server drop the connection
                exchange.status = 500
                raise
            await reply(internal_error(scope, exchange, identifier))
        except BaseException:
            exchange.status = 500
            raise
        finally:
            if not observed:
                layer.observe(exchange, scope)

    def _refusal(self, scope: Scope) -> Response | None:
        """The API key's refusal (401/403) or the limits' (draining, concurrency: 503), if any."""
        layer = self.layer
        if layer.keys is not None and layer.keys.protects(scope["path"]):
            refusal = layer.keys.admit(scope)
            if refusal is not None:
                return refusal
        return layer.gate_refusal(scope)

    def _named(self, scope: Scope) -> tuple[NamedPost, str, tuple[int, str | None, bool] | None] | None:
        """A named write's route and name, and its body's :func:`small_json` facts; else None.

        The facts are None (the general layer serves it) unless the body is JSON of a declared
        length within the route's on-loop bound now and the body limit, not coded, and not the
        OIP binary's.
        """
        matched = self.named.match(scope["path"])
        if matched is None:
            return None
        post, name = matched
        if post.inline_bytes is None:  # (not a route that writes on the event loop)
            return None
        return post, name, small_json(scope, min(post.inline_bytes(scope), self.layer.max_body_bytes))

    async def _written(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint, due: float
    ) -> Response:
        """An admitted named write's answer: `endpoint` awaited under the deadline `due`, a slot held.

        Past `due` the shared deadline watch cancels the request's task (within one period of it;
        a write not committed by then is dropped unwritten), as the limits layer's inline runner's
        timer does, and the answer is its 503; errors are answered by the app's problem+json
        handlers.
        """
        layer = self.layer
        request = Request(scope, receive, send)
        task = asyncio.current_task()
        assert task is not None  # a request is always served by a task
        cancelling = task.cancelling()
        watch = self.watch
        gate = layer.gate
        gate.enter()
        watch.watch(task, due)
        token = DEADLINE.set(due)  # (what `deadline` does, `due` a time already)
        try:
            return await endpoint(request)
        except asyncio.CancelledError:
            if not watch.cancelled(task, cancelling):
                raise  # cancelled from outside (the client left, the server stops), not by the deadline
            return layer.timeout_refusal(scope)
        except Cancelled:
            return layer.timeout_refusal(scope)
        except Exception as error:
            handler = handler_for(self.handlers, error)
            if handler is None:
                raise
            answer = handler(request, error)
            return await answer if inspect.isawaitable(answer) else answer
        finally:
            DEADLINE.reset(token)
            watch.unwatch(task)
            gate.leave()

    def _answer(
        self, scope: Scope, receive: Receive, send: Send, spec: DirectRoute, data: bytes, due: float
    ) -> tuple[bytes, int] | Response | Awaitable[Response] | None:
        """The answer to an admitted body that came whole; None if the route sends it to a worker thread.

        A plain request's answer is its JSON bytes (sent as ``Reply.json`` sends them) and its
        rows; its body is read as it came (the general readers get a copy they may change). The work
        stops at the request's deadline `due` (``time.monotonic()`` seconds). An error handler's
        answer may be awaitable (FastAPI's validation handler is a coroutine).
        """
        layer = self.layer
        request = None  # made only for the general reader or an error handler
        state = scope["state"]
        state["bytes_in"] = len(data)
        gate = layer.gate
        gate.enter()
        token = DEADLINE.set(due)  # (what `deadline` does, `due` a time already)
        try:
            plain = spec.plain
            if plain is None:
                request = Request(scope, receive, send)
                body = spec.parse(request, RawBody(bytearray(data), "json"), layer.settings)
            else:
                fields = parse_json_object(data, unique_keys=False)
                # a body with no string but its keys holds each key once (two quotes a key)
                if fields.keys() == plain.fields and numbers_only(data, fields):
                    answer = plain.answer(fields, layer.settings.max_elements)
                    if answer is not None:
                        return answer
                check_unique_keys(data, fields)
                request = Request(scope, receive, send)
                body = spec.parse(request, RawBody(bytearray(data), "json"), layer.settings, fields)
            if spec.threaded is not None and spec.threaded(body):
                return None
            return spec.score(body)
        except Cancelled:
            return layer.timeout_refusal(scope)
        except Exception as error:
            handler = handler_for(self.handlers, error)
            if handler is None:
                raise
            return handler(request or Request(scope, receive, send), error)
        finally:
            DEADLINE.reset(token)
            gate.leave()
