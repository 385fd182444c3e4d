"""Per-camera bundles (issue 20, adaptation from verdicts): their lineage, the replacement rules, their Redis layout.

``POST /v1/streams/{id}/adapt`` (or ``vad adapt``) fine-tunes DSANet from the stream's model on the stream's
reviewed events (false alarms as normal videos, true alerts as abnormal) and saved normal windows, without decoding
video again. The result is a **candidate**: a small bundle of DSANet weights and class embeddings (no CLIP: the
worker's encoder is shared) stored as ``.bundles/<stream id>/<bundle id>.safetensors`` beside the uploads, and one
:class:`BundleLineage` entry that says where it came from (parent, data, time, metrics).

A candidate goes through two gates, both written here once (:func:`offline_rule`, :func:`shadow_rule`) and applied
by the worker that adapts, the worker that runs the stream and the API's promote route alike:

1. **Held-out verdicts and the calibration stretch** (:func:`offline_rule`, in the adaptation job): a share of the
   verdicts and of the normal windows is held out of training. On them, the candidate must score a frame AUC at
   least the parent's, and, with each model's threshold set to catch every held-out true alert (the same recall,
   1.0), raise no more false alarms on the held-out false alarms and normal windows than the parent; and be
   strictly better on one of the two. A candidate that fails is ``rejected`` (kept in the lineage, never run).
2. **Shadow** (:func:`shadow_rule`, live): a passing candidate runs beside the active model on the same snippets
   (the CLIP features are computed once; two DSANet heads). Its events are recorded, not published. Once it has
   scored ``min_snippets`` snippets and raised no more events than the active model over the same snippets, it is
   promoted (the worker does it when ``VAD_ADAPT_AUTO_PROMOTE`` is on; ``POST …/bundles/promote`` any time the
   rules hold, or with ``force``).

Rollback (``POST …/bundles/rollback``) makes the active bundle's parent active again (the deployment's model
when it has none) and retires it. Keys (:mod:`vad.keys`): ``stream:{id}:bundles``, a hash with ``active`` and
``shadow`` (bundle ids, ``""`` for none), ``adaptation`` (the last adaptation job's :class:`AdaptationStatus`) and
one ``lineage:<bundle id>`` field per bundle; ``stream:{id}:shadow`` a capped list of the shadow's events. Both
go with the stream.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vad.exceptions import BundleRefused

ADAPT_FUNCTION = "workers.jobs.adapt_stream_job"
"""The adaptation job the API enqueues by name."""
BUNDLES_DIR = ".bundles"
SHADOW_EVENTS_KEPT = 200
"""The newest shadow events kept per stream."""

BundleState = Literal["rejected", "shadow", "active", "retired"]
AdaptationState = Literal["queued", "running", "finished", "failed"]


def bundle_key(stream_id: str, bundle_id: str) -> str:
    """The storage key of a per-camera bundle file."""
    return f"{BUNDLES_DIR}/{stream_id}/{bundle_id}.safetensors"


def lineage_field(bundle_id: str) -> str:
    """The field of a bundle's lineage in the stream's bundles hash."""
    return f"lineage:{bundle_id}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HeldOutMetrics(_Model):
    """Parent and candidate on what training did not see: held-out verdicts and normal windows."""

    true_alerts: int = Field(description="Held-out events confirmed as true alerts.")
    false_alarms: int = Field(description="Held-out events judged false alarms.")
    normal_windows: int = Field(description="Held-out normal windows (the calibration stretch).")
    parent_auc: float | None = Field(description="Frame (snippet) AUC of the parent; null without both classes.")
    candidate_auc: float | None = Field(description="Frame AUC of the candidate.")
    parent_threshold: float | None = Field(description="The parent's highest threshold that catches every held-out "
                                                       "true alert (recall 1.0).")
    candidate_threshold: float | None = Field(description="The same for the candidate.")
    parent_false_alarms: int | None = Field(description="Held-out false alarms and normal windows the parent still "
                                                        "raises an event on at its threshold.")
    candidate_false_alarms: int | None = Field(description="The same for the candidate.")


class ShadowStats(_Model):
    """What the shadow did beside the active model, over the same snippets, since it started."""

    since: float = Field(description="When the shadow started (Unix time).")
    snippets: int = Field(0, description="Snippets both heads scored.")
    shadow_events: int = Field(0, description="Events the shadow opened (recorded, not published).")
    live_events: int = Field(0, description="Events the active model opened over the same snippets.")


class BundleLineage(_Model):
    """Where a per-camera bundle came from and how it fared."""

    id: str
    stream_id: str
    parent: str | None = Field(description="The bundle it was fine-tuned from; null: the deployment's model.")
    base_model: str = Field(description="The deployment's model name it descends from (its CLIP and preset).")
    base_sha256: str = Field(description="Weights digest of that model's bundle.")
    created_at: float
    state: BundleState
    reason: str = Field(description="Why it is in its state (the rule's words).")
    data: dict[str, Any] = Field(description="What it was trained and judged on: event ids per split, the "
                                             "normal windows, counts.")
    training: dict[str, Any] = Field(description="Iterations, epochs, learning rate, seconds.")
    metrics: HeldOutMetrics
    shadow: ShadowStats | None = None
    size_bytes: int = Field(0, description="Size of the bundle file.")
    sha256: str = Field("", description="Its weights digest.")
    promoted_at: float | None = None
    retired_at: float | None = None

    def to_json(self) -> str:
        return self.model_dump_json()


class AdaptationStatus(_Model):
    """The last adaptation job of a stream: where it is, and why it failed."""

    job_id: str
    state: AdaptationState
    stage: str = ""
    percent: float = 0.0
    reason: str | None = None
    bundle_id: str | None = None
    at: float = Field(default_factory=time.time)

    def to_json(self) -> str:
        return self.model_dump_json()


def offline_rule(m: HeldOutMetrics) -> tuple[bool, str]:
    """Whether a candidate may run in shadow: better on held-out verdicts and the calibration stretch (see the
    module's text), and the reason in words."""
    if m.true_alerts == 0 or m.false_alarms + m.normal_windows == 0:
        return False, (f"held out {m.true_alerts} true alerts and {m.false_alarms + m.normal_windows} false alarms "
                       "or normal windows: the comparison needs at least one of each; give more verdicts")
    if m.parent_auc is None or m.candidate_auc is None or m.parent_false_alarms is None \
            or m.candidate_false_alarms is None:
        return False, "the held-out metrics are incomplete"
    auc = f"held-out AUC {m.candidate_auc:.3f} vs {m.parent_auc:.3f}"
    alarms = (f"false alarms at recall 1.0 on {m.false_alarms + m.normal_windows} held-out negatives "
              f"{m.candidate_false_alarms} vs {m.parent_false_alarms}")
    if m.candidate_auc < m.parent_auc or m.candidate_false_alarms > m.parent_false_alarms:
        return False, f"not better than its parent: {auc}, {alarms}"
    if m.candidate_auc == m.parent_auc and m.candidate_false_alarms == m.parent_false_alarms:
        return False, f"no better than its parent: {auc}, {alarms}"
    return True, f"better than its parent: {auc}, {alarms}"


def shadow_rule(stats: ShadowStats | None, min_snippets: int) -> tuple[bool, str]:
    """Whether a shadow may replace the active model: enough snippets, and no more events over them."""
    if stats is None or stats.snippets < min_snippets:
        seen = 0 if stats is None else stats.snippets
        return False, f"the shadow has scored {seen} of the {min_snippets} snippets it must run first"
    if stats.shadow_events > stats.live_events:
        return False, (f"the shadow raised {stats.shadow_events} events over {stats.snippets} snippets, the active "
                       f"model {stats.live_events}")
    return True, (f"the shadow raised {stats.shadow_events} events over {stats.snippets} snippets, the active model "
                  f"{stats.live_events}")


# --- the stream's bundles hash: what it holds, and its transitions ----------------------------------------------

SWAP = """
local active = redis.call('HGET', KEYS[1], 'active') or ''
local shadow = redis.call('HGET', KEYS[1], 'shadow') or ''
if active ~= ARGV[1] or shadow ~= ARGV[2] then return 0 end
for field, value in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[1], field, value) end
return 1
"""
"""Apply field updates only if ``active`` and ``shadow`` are still what they were read as (compare and set)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class BundleBook:
    """A snapshot of a stream's bundles hash, decoded."""

    active: str
    shadow: str
    lineage: dict[str, BundleLineage]
    adaptation: AdaptationStatus | None

    @classmethod
    def read(cls, raw: dict[Any, Any]) -> BundleBook:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        lineage = {}
        for name, value in fields.items():
            if name.startswith("lineage:"):
                entry = BundleLineage.model_validate_json(value)
                stats = fields.get(f"shadow_stats:{entry.id}")
                if stats:
                    entry = entry.model_copy(update={"shadow": ShadowStats.model_validate_json(stats)})
                lineage[entry.id] = entry
        adaptation = fields.get("adaptation")
        return cls(fields.get("active", ""), fields.get("shadow", ""), lineage,
                   AdaptationStatus.model_validate_json(adaptation) if adaptation else None)

    def entries(self) -> list[BundleLineage]:
        """Every bundle, oldest first."""
        return sorted(self.lineage.values(), key=lambda e: e.created_at)

    def apply(self, conn: Any, key: str, updates: dict[str, str]) -> bool:
        """Write ``updates`` if nobody changed the active or shadow bundle since this snapshot (:data:`SWAP`)."""
        return bool(conn.register_script(SWAP)(keys=[key], args=[self.active, self.shadow, json.dumps(updates)]))

    def _with(self, entry: BundleLineage, **changes: Any) -> tuple[str, str]:
        return lineage_field(entry.id), entry.model_copy(update=changes).model_dump_json(exclude={"shadow"})

    def candidate(self, entry: BundleLineage) -> dict[str, str]:
        """Updates recording a new candidate: a passing one becomes the shadow (retiring the one it replaces)."""
        updates = dict([self._with(entry)])
        if entry.state == "shadow":
            updates["shadow"] = entry.id
            if self.shadow and self.shadow in self.lineage:
                updates.update([self._with(self.lineage[self.shadow], state="retired", retired_at=time.time(),
                                           reason=f"replaced in shadow by {entry.id}")])
        return updates

    def promote(self, min_snippets: int, force: bool = False) -> dict[str, str]:
        """Updates making the shadow active (its predecessor stays in the lineage as its parent).

        Raises:
            BundleRefused: No shadow, or the shadow rule does not hold (and not ``force``).
        """
        if not self.shadow or self.shadow not in self.lineage:
            raise BundleRefused("no bundle runs in shadow: adapt first (POST /v1/streams/{id}/adapt)")
        entry = self.lineage[self.shadow]
        ok, why = shadow_rule(entry.shadow, min_snippets)
        if not ok and not force:
            raise BundleRefused(f"bundle {entry.id} stays in shadow: {why} (force=true promotes it anyway)")
        now = time.time()
        updates = dict([self._with(entry, state="active", promoted_at=now,
                                   reason=("promoted by force: " if not ok else "promoted: ") + why)])
        if self.active and self.active in self.lineage:
            updates.update([self._with(self.lineage[self.active], state="retired", retired_at=now,
                                       reason=f"replaced by {entry.id}")])
        updates.update(active=entry.id, shadow="")
        return updates

    def rollback(self) -> dict[str, str]:
        """Updates making the active bundle's parent active again (the deployment's model when it has none).

        Raises:
            BundleRefused: The stream runs the deployment's model already.
        """
        if not self.active or self.active not in self.lineage:
            raise BundleRefused("the stream runs the deployment's model: there is nothing to roll back")
        entry, now = self.lineage[self.active], time.time()
        updates = dict([self._with(entry, state="retired", retired_at=now, reason="rolled back")])
        parent = self.lineage.get(entry.parent or "")
        if parent is not None:
            updates.update([self._with(parent, state="active", reason=f"active again: {entry.id} rolled back")])
        updates.update(active=parent.id if parent is not None else "")
        return updates
