"""The rules of per-camera bundles (vad.bundles): which candidate may run in shadow, which shadow may replace the
active model, and the transitions of a stream's bundles: a candidate, a promotion, a rollback, the lineage."""

from __future__ import annotations

import pytest

from vad.bundles import BundleBook, BundleLineage, HeldOutMetrics, ShadowStats, offline_rule, shadow_rule
from vad.exceptions import BundleRefused


def metrics(parent_auc: float = 0.8, candidate_auc: float = 0.9, parent_fa: int = 3, candidate_fa: int = 1,
            alerts: int = 2, alarms: int = 2, windows: int = 2) -> HeldOutMetrics:
    return HeldOutMetrics(true_alerts=alerts, false_alarms=alarms, normal_windows=windows, parent_auc=parent_auc,
                          candidate_auc=candidate_auc, parent_threshold=0.5, candidate_threshold=0.6,
                          parent_false_alarms=parent_fa, candidate_false_alarms=candidate_fa)


@pytest.mark.parametrize(("m", "passes", "why"), [
    (metrics(), True, "better than its parent"),
    (metrics(candidate_auc=0.8, candidate_fa=2), True, "better"),  # equal AUC, fewer false alarms
    (metrics(candidate_fa=3), True, "better"),  # higher AUC, as many false alarms
    (metrics(candidate_auc=0.79), False, "not better"),  # fewer false alarms but a lower AUC
    (metrics(candidate_fa=4), False, "not better"),  # a higher AUC but more false alarms
    (metrics(candidate_auc=0.8, candidate_fa=3), False, "no better"),  # a tie is no reason to change
    (metrics(alerts=0), False, "at least one of each"),
    (metrics(alarms=0, windows=0), False, "at least one of each"),
])
def test_a_candidate_runs_in_shadow_only_when_better_on_held_out_verdicts(m: HeldOutMetrics, passes: bool,
                                                                          why: str) -> None:
    ok, reason = offline_rule(m)
    assert ok is passes and why in reason


def test_a_shadow_replaces_the_active_model_after_enough_snippets_with_no_more_events() -> None:
    assert not shadow_rule(None, 100)[0]
    assert "scored 99 of the 100" in shadow_rule(ShadowStats(since=0, snippets=99), 100)[1]
    assert shadow_rule(ShadowStats(since=0, snippets=100, shadow_events=2, live_events=2), 100)[0]
    ok, why = shadow_rule(ShadowStats(since=0, snippets=500, shadow_events=3, live_events=2), 100)
    assert not ok and "raised 3 events over 500 snippets, the active model 2" in why


def entry(bundle_id: str, parent: str | None, state: str = "shadow") -> BundleLineage:
    return BundleLineage(id=bundle_id, stream_id="cam", parent=parent, base_model="default", base_sha256="x",
                         created_at=float(len(bundle_id)), state=state, reason="", data={}, training={},  # type: ignore[arg-type]
                         metrics=metrics())


def apply(fields: dict[str, str], updates: dict[str, str]) -> BundleBook:
    fields.update(updates)
    return BundleBook.read(fields)


def test_candidates_promotion_and_rollback_keep_the_lineage() -> None:
    fields: dict[str, str] = {}
    book = apply(fields, BundleBook.read(fields).candidate(entry("b1", None)))
    assert (book.active, book.shadow) == ("", "b1")
    with pytest.raises(BundleRefused, match="scored 0 of the 10"):
        book.promote(10)
    fields["shadow_stats:b1"] = ShadowStats(since=0, snippets=10, shadow_events=0, live_events=1).model_dump_json()
    book = apply(fields, BundleBook.read(fields).promote(10))
    assert (book.active, book.shadow) == ("b1", "") and book.lineage["b1"].state == "active"
    assert book.lineage["b1"].promoted_at is not None and book.lineage["b1"].shadow is not None
    # a rejected candidate is recorded and never runs; a later one descends from the active bundle
    book = apply(fields, book.candidate(entry("b2", "b1", state="rejected")))
    assert book.shadow == "" and book.lineage["b2"].state == "rejected"
    book = apply(fields, book.candidate(entry("b3", "b1")))
    book = apply(fields, book.candidate(entry("b4", "b1")))  # a newer candidate replaces the one in shadow
    assert book.shadow == "b4" and book.lineage["b3"].state == "retired"
    book = apply(fields, book.promote(10, force=True))
    assert book.active == "b4" and book.lineage["b1"].state == "retired"
    assert book.lineage["b4"].reason.startswith("promoted by force")
    book = apply(fields, book.rollback())
    assert book.active == "b1" and book.lineage["b1"].state == "active" and book.lineage["b4"].state == "retired"
    book = apply(fields, book.rollback())
    assert book.active == "" and [e.id for e in book.entries()] == ["b1", "b2", "b3", "b4"]
    with pytest.raises(BundleRefused, match="runs the deployment's model"):
        book.rollback()
    with pytest.raises(BundleRefused, match="no bundle runs in shadow"):
        book.promote(10, force=True)
