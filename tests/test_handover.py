"""The handover rule of a socket replaced by plan, as plain calls: each topic takes the old socket's
pushes until the two streams overlap (the old one delivers a push the new one already delivered,
or the new one delivers the old one's last), then only the new one's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tradeloop.models import Tick
from tradeloop.streams.connection import _Handover

OLD, NEW = object(), object()
A, B = "topic-a", "topic-b"


def handover() -> _Handover:
    return _Handover(OLD, NEW)  # type: ignore[arg-type]  # only the sockets' identity matters


def test_a_topic_switches_where_the_two_streams_overlap_and_sees_each_push_once() -> None:
    rule, topics = handover(), {A: None}
    seen: list[Any] = []
    seen += rule.admit(OLD, A, [1, 2], topics)  # type: ignore[arg-type]
    assert rule.admit(NEW, A, [3, 4], topics) == ()  # type: ignore[arg-type]  # ahead of the old: held
    seen += rule.admit(OLD, A, [3], topics)  # type: ignore[arg-type]  # overlap at 3: 4 comes from the new
    assert rule.admit(OLD, A, [4, 5], topics) == ()  # type: ignore[arg-type]  # the old one is done
    seen += rule.admit(NEW, A, [5, 6], topics)  # type: ignore[arg-type]
    assert seen == [1, 2, 3, 4, 5, 6]
    assert rule.complete.is_set()


def test_the_new_socket_starting_behind_the_old_one_repeats_nothing() -> None:
    rule, topics = handover(), {A: None}
    seen: list[Any] = []
    seen += rule.admit(OLD, A, [1, 2, 3, 4], topics)  # type: ignore[arg-type]
    assert rule.admit(NEW, A, [2, 3], topics) == ()  # type: ignore[arg-type]  # behind the old one: held
    seen += rule.admit(OLD, A, [5], topics)  # type: ignore[arg-type]
    seen += rule.admit(NEW, A, [4, 5, 6], topics)  # type: ignore[arg-type]  # caught up at 5: 6 is new
    assert rule.admit(OLD, A, [6, 7], topics) == ()  # type: ignore[arg-type]  # the old one is done
    seen += rule.admit(NEW, A, [7], topics)  # type: ignore[arg-type]
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert rule.complete.is_set()


def test_a_new_socket_always_read_after_the_old_one_switches_on_the_old_ones_last_push() -> None:
    # The server writes each push to the old socket first, and on asyncio each read is handled as
    # it arrives: the new copy never leads. Found by an outside audit (every handover timed out).
    rule, topics = handover(), {A: None}
    seen: list[Any] = []
    for push in (1, 2, 3):
        seen += rule.admit(OLD, A, [push], topics)  # type: ignore[arg-type]
        seen += rule.admit(NEW, A, [push], topics)  # type: ignore[arg-type]
    assert seen == [1, 2, 3]
    assert rule.complete.is_set() and rule.unswitched(topics) == []


def test_the_handover_completes_when_every_topic_switched() -> None:
    rule, topics = handover(), {A: None, B: None}
    rule.admit(NEW, A, [1], topics)  # type: ignore[arg-type]
    rule.admit(OLD, A, [1], topics)  # type: ignore[arg-type]
    assert not rule.complete.is_set() and rule.unswitched(topics) == [B]
    rule.admit(NEW, B, [9], topics)  # type: ignore[arg-type]
    rule.admit(OLD, B, [9], topics)  # type: ignore[arg-type]
    assert rule.complete.is_set() and rule.unswitched(topics) == []


def test_an_old_socket_that_ends_first_leaves_every_topic_to_the_new_one() -> None:
    rule, topics = handover(), {A: None, B: None}
    rule.admit(OLD, A, [1], topics)  # type: ignore[arg-type]
    rule.admit(NEW, A, [2], topics)  # type: ignore[arg-type]  # no overlap seen: held
    rule.old_ended()  # the server closed it as announced
    assert rule.complete.is_set()
    assert rule.admit(NEW, A, [3], topics) == [3]  # type: ignore[arg-type]
    assert rule.admit(NEW, B, [9], topics) == [9]  # type: ignore[arg-type]
    assert rule.unswitched(topics) == [A, B]  # no overlap proven: both count as interrupted


def test_ticks_stamped_on_receipt_are_matched_by_their_update_id() -> None:
    # Binance spot's book ticker has no event time: each socket stamps its copy when it arrives.
    def book(update_id: int, received_ms: int) -> Tick:
        price = Decimal(100 + update_id)
        return Tick("binance", "BTC/USDT", received_ms, None, bid=price, ask=price + 1, update_id=update_id)

    rule, topics = handover(), {A: None}
    seen: list[Any] = []
    seen += rule.admit(OLD, A, [book(1, 1000), book(2, 1001)], topics)  # type: ignore[arg-type]
    assert rule.admit(NEW, A, [book(1, 1002)], topics) == ()  # type: ignore[arg-type]  # behind: held
    seen += rule.admit(OLD, A, [book(3, 1003)], topics)  # type: ignore[arg-type]
    seen += rule.admit(NEW, A, [book(2, 1004), book(3, 1005), book(4, 1006)], topics)  # type: ignore[arg-type]
    assert [tick.update_id for tick in seen] == [1, 2, 3, 4]  # overlap at update 3, whatever the stamps


def test_a_new_socket_that_stays_pushes_behind_takes_over_where_the_old_one_stopped() -> None:
    # Found in review: compared with the old socket's last push only, a new socket two pushes
    # behind never matched, and every such handover ran to its timeout.
    rule, topics = handover(), {A: None}
    seen: list[Any] = []
    seen += rule.admit(OLD, A, [1, 2, 3], topics)  # type: ignore[arg-type]
    seen += rule.admit(NEW, A, [1], topics)  # type: ignore[arg-type]  # two behind: switched, nothing new yet
    assert rule.complete.is_set()
    assert rule.admit(OLD, A, [4], topics) == ()  # type: ignore[arg-type]  # the old one is done
    seen += rule.admit(NEW, A, [2, 3, 4], topics)  # type: ignore[arg-type]  # 4 is past what the old one gave
    seen += rule.admit(NEW, A, [5], topics)  # type: ignore[arg-type]
    assert seen == [1, 2, 3, 4, 5]
