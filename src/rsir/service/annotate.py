"""The annotation mode of the service (``rsir serve --annotate``) and relevance feedback on result lists.

Routes (writes need ``Authorization: Bearer <token>``, checked by the guard before the body is read):

- ``GET  /api/annotate/status``: answers, waiting pairs, model version and its mAP, the running round and its
  progress;
- ``GET  /api/annotate/next?n=``: waiting pairs, the most informative first (each item's quicklook; labels only
  with ``labels=true``);
- ``POST /api/annotate/answer`` ``{query_id, answer: similar | not_similar, who?}`` (write): stored durably
  before the reply; an unknown pair is 404, a second answer 409;
- ``POST /api/annotate/round`` ``{strategy?, budget?}`` (write): 202, the round retrains in a background thread
  and swaps the new model into the engine atomically (searches keep answering); 409 while one runs;
- ``POST /api/feedback/search`` ``{id, relevant, not_relevant, k, offset}``: Rocchio on the index's vectors,
  then an exact search of the index with the moved query;
- ``POST /api/feedback/marks`` ``{id, relevant, not_relevant}`` (write): the marks become training pairs
  (query, result, similar / not similar) in the same store.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rsir.feedback import FeedbackError
from rsir.feedback.rocchio import rocchio

if TYPE_CHECKING:
    from rsir.feedback.anneal import HeadState
    from rsir.feedback.session import AnnotationSession
    from rsir.service.app import Service
    from rsir.service.guard import GuardRules

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Who = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MAX_MARKS = 100


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_id: int = Field(ge=1)
    answer: Literal["similar", "not_similar"]
    who: Who = "page"


class RoundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: str | None = None
    budget: int | None = Field(default=None, ge=0, le=1000)


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: ItemId
    relevant: list[ItemId] = Field(default_factory=list, max_length=MAX_MARKS)
    not_relevant: list[ItemId] = Field(default_factory=list, max_length=MAX_MARKS)
    k: int = 20
    offset: int = 0
    who: Who = "page"


class AnnotationController:
    """The session behind the page: rounds in a background thread, the model swapped into the engine."""

    def __init__(self, session: AnnotationSession, svc: Service) -> None:
        self.session = session
        self.svc = svc
        self.version: int | None = None
        self.thread: threading.Thread | None = None
        self.last_error: str | None = None
        head, version = session.current()
        if head is not None and version is not None:
            self.swap(head, version)

    def swap(self, head: HeadState, version: int) -> None:
        index, encoder = self.session.search_space(head, version)
        self.svc.engine.swap(index, encoder)
        self.version = version

    def start(self, strategy: str | None, budget: int | None, who: str) -> dict[str, Any]:
        rid, strategy, budget = self.session.begin_round(strategy, budget, who)  # 409 when one runs

        def work() -> None:
            try:
                self.session.complete_round(rid, strategy, budget, on_model=self.swap)
                self.last_error = None
            except Exception as e:  # the round is closed as failed in the store; the page shows the message
                self.last_error = str(e) or type(e).__name__

        self.thread = threading.Thread(target=work, name=f"rsir-round-{rid}", daemon=True)
        self.thread.start()
        return {"round": rid, "strategy": strategy, "budget": budget, "status": "running"}

    def status(self) -> dict[str, Any]:
        st = self.session.status()
        st["serving_model_version"] = self.version
        st["last_error"] = self.last_error
        return st


def add_annotation_routes(app: FastAPI, svc: Service, session: AnnotationSession, rules: GuardRules) -> None:
    """Register the annotation and feedback routes on ``app`` (and their write routes with the guard)."""
    ctl = AnnotationController(session, svc)
    app.state.annotation = ctl
    store = session.store
    eng = svc.engine
    rules.writes |= {("POST", "/api/annotate/answer"), ("POST", "/api/annotate/round"),
                     ("POST", "/api/feedback/marks")}

    def pair_json(q: dict[str, Any], labels: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"query_id": q["id"], "round": q["round"], "score": q["score"]}
        for side in ("a", "b"):
            with eng.lock.read():
                rec = svc.item_json(eng.position(q[side]))
            if not labels:
                rec = {k: v for k, v in rec.items() if k not in ("labels", "captions")}
            out[side] = rec
        return out

    @app.get("/api/annotate/status")
    def annotate_status() -> dict[str, Any]:
        return ctl.status()

    @app.get("/api/annotate/next")
    def annotate_next(n: int = Query(1, ge=1, le=50), labels: bool = False) -> dict[str, Any]:
        return {"pairs": [pair_json(q, labels) for q in store.pending(n)], "status": ctl.status()}

    @app.post("/api/annotate/answer", status_code=201)
    def annotate_answer(request: Request, body: AnswerBody) -> dict[str, Any]:
        svc.check_auth(request)
        ans = store.answer(body.query_id, body.answer == "similar", body.who, model_version=ctl.version)
        return {"answer": ans.to_json(), "pending": len(store.pending(100000))}

    @app.post("/api/annotate/round", status_code=202)
    def annotate_round(request: Request, body: RoundBody) -> dict[str, Any]:
        svc.check_auth(request)
        return ctl.start(body.strategy, body.budget, "page")

    @app.post("/api/feedback/marks", status_code=201)
    def feedback_marks(request: Request, body: FeedbackBody) -> JSONResponse:
        svc.check_auth(request)
        marked_positions(svc, body)  # unknown ids: 404 before anything is stored
        both = set(body.relevant) & set(body.not_relevant)
        if both:
            raise FeedbackError(f"marked both relevant and not relevant: {sorted(both)[:5]}")
        rows = [(body.id, i, True) for i in body.relevant if i != body.id]
        rows += [(body.id, i, False) for i in body.not_relevant if i != body.id]
        got = store.add_pairs(rows, body.who, source="feedback", model_version=ctl.version, skip_duplicates=True)
        return JSONResponse({"stored": len(got), "already_answered": len(rows) - len(got),
                             "labelled": store.count()}, status_code=201)


def marked_positions(svc: Service, body: FeedbackBody) -> tuple[int, list[int], list[int]]:
    """Rows of the query and the marked items (NotFoundError, a 404, names an unknown id)."""
    eng = svc.engine
    with eng.lock.read():
        return (eng.position(body.id), [eng.position(i) for i in body.relevant],
                [eng.position(i) for i in body.not_relevant])


def add_feedback_search(app: FastAPI, svc: Service) -> None:
    """``POST /api/feedback/search``: relevance feedback on any index (codes or floats), read-only."""
    eng = svc.engine

    @app.post("/api/feedback/search")
    def feedback_search(body: FeedbackBody) -> dict[str, Any]:
        p, _, _ = marked_positions(svc, body)
        vec = eng.vectors([body.id])[0]
        pos = eng.vectors(body.relevant) if body.relevant else np.zeros((0, *vec.shape), vec.dtype)
        neg = eng.vectors(body.not_relevant) if body.not_relevant else np.zeros((0, *vec.shape), vec.dtype)
        moved = rocchio(vec, pos, neg, eng.metric)
        with eng.lock.read():
            labels, rec = eng.table.labels[p], eng.item_record(p)
        rec = {**rec, "relevant": body.relevant, "not_relevant": body.not_relevant}
        res = eng.search_vector(moved, body.k, body.offset, None, labels, p, "feedback", rec)
        out = svc.answer(res)
        out["query"] = svc.with_quicklook(out["query"])
        return out
