"""Prometheus metrics read from tradeloop's health snapshots, at scrape time.

Nothing is counted twice: the stream layer, the engine and the publisher already keep their
counters, so a custom collector turns the snapshot of the moment into metric families whenever
``/metrics`` is scraped. Metric names (labels in braces):

Streams (any :class:`~tradeloop.streams.MarketData`: the exchanges' sockets or Redis)
  ``tradeloop_connection_messages_total{exchange,market,connection}``   frames received
  ``tradeloop_connection_reconnects_total{exchange,market,connection}`` reconnects (Redis: retries)
  ``tradeloop_connection_rotations_total{exchange,market,connection}``  sockets replaced by plan, no gap
  ``tradeloop_connection_parse_errors_total{exchange,market,connection,kind}`` bad frames by kind
  ``tradeloop_connection_rest_fallback{exchange,market,connection}``   1 while polling REST instead
  ``tradeloop_topic_messages_total{exchange,topic}``                   updates of the topic
  ``tradeloop_topic_closed_candles_total{exchange,topic}``             closed candles handed on (kline topics)
  ``tradeloop_topic_backfilled_candles_total{exchange,topic}``         candles fetched over REST (kline topics)
  ``tradeloop_topic_rest_errors_total{exchange,topic}``                failed REST calls (retried)
  ``tradeloop_topic_watch_errors_total{exchange,topic}``               failed watch loops (ccxt.pro)
  ``tradeloop_topic_last_message_age_seconds{exchange,topic}``         seconds since the last update
  ``tradeloop_topic_rest_mode{exchange,topic}``                        1 while served over REST
  ``tradeloop_topic_standby{exchange,topic}``                          1 while another engine owns it (Redis)
  ``tradeloop_subscriber_lag{exchange,topic,subscriber}``              items buffered, not yet taken
  ``tradeloop_subscriber_dropped_total{exchange,topic,subscriber}``    items dropped by its policy
Engine (``tradeloop run``)
  ``tradeloop_orders_total``, ``tradeloop_fills_total`` (this run), ``tradeloop_signals_total``,
  ``tradeloop_risk_rejections_total{reason}``, ``tradeloop_equity``, ``tradeloop_cash``,
  ``tradeloop_realised_pnl``, ``tradeloop_unrealised_pnl``, ``tradeloop_fees``,
  ``tradeloop_max_drawdown``, ``tradeloop_kill_switch`` (1 once tripped)
Collector (``tradeloop publish``)
  ``tradeloop_published_klines_total``, ``tradeloop_published_ticks_total``,
  ``tradeloop_publish_duplicates_total``, ``tradeloop_publish_backfilled_total``,
  ``tradeloop_redis_retries_total``
Simulator (``tradeloop sim``)
  ``tradeloop_sim_connections_open``, ``tradeloop_sim_frames_sent_total``,
  ``tradeloop_sim_subscriptions``

Money is in the quote currency, as floats (Prometheus has no decimals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..distributed.settings import PublisherStats
from ..exchanges.base import TopicKind
from ..sim.config import SimStats
from ..streams import StreamHealth
from ..trading.engine import EngineStatus

__all__ = ["Snapshot", "SnapshotCollector"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Whatever the running command has: each part is optional."""

    health: StreamHealth | None = None
    engine: EngineStatus | None = None
    publisher: PublisherStats | None = None
    sim: SimStats | None = None


class SnapshotCollector(Collector):
    """A prometheus_client collector that reads ``snapshot()`` on every scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        if snapshot.health is not None:
            yield from _stream_metrics(snapshot.health)
        if snapshot.engine is not None:
            yield from _engine_metrics(snapshot.engine)
        if snapshot.publisher is not None:
            yield from _publisher_metrics(snapshot.publisher)
        if snapshot.sim is not None:
            yield from _sim_metrics(snapshot.sim)


def _stream_metrics(health: StreamHealth) -> Iterator[Metric]:
    labels = ["exchange", "market", "connection"]
    messages = CounterMetricFamily("tradeloop_connection_messages", "Frames received.", labels=labels)
    reconnects = CounterMetricFamily("tradeloop_connection_reconnects", "Reconnects.", labels=labels)
    rotations = CounterMetricFamily(
        "tradeloop_connection_rotations", "Sockets replaced by plan, handed over without a gap.", labels=labels
    )
    parse_errors = CounterMetricFamily(
        "tradeloop_connection_parse_errors", "Malformed frames, by kind.", labels=[*labels, "kind"]
    )
    fallback = GaugeMetricFamily("tradeloop_connection_rest_fallback", "1 while on REST fallback.", labels=labels)
    for connection in health.connections:
        values = [connection.exchange, connection.market, str(connection.connection_id)]
        messages.add_metric(values, connection.messages)
        reconnects.add_metric(values, connection.reconnects)
        rotations.add_metric(values, connection.rotations)
        fallback.add_metric(values, float(connection.use_rest_fallback))
        for kind, count in connection.parse_errors.items():
            parse_errors.add_metric([*values, kind], count)
    yield from (messages, reconnects, rotations, parse_errors, fallback)

    topic_labels = ["exchange", "topic"]
    topic_messages = CounterMetricFamily("tradeloop_topic_messages", "Updates of the topic.", labels=topic_labels)
    closed = CounterMetricFamily("tradeloop_topic_closed_candles", "Closed candles handed on.", labels=topic_labels)
    backfilled = CounterMetricFamily(
        "tradeloop_topic_backfilled_candles", "Candles fetched over REST.", labels=topic_labels
    )
    age = GaugeMetricFamily(
        "tradeloop_topic_last_message_age_seconds", "Seconds since the last update.", labels=topic_labels
    )
    rest_mode = GaugeMetricFamily("tradeloop_topic_rest_mode", "1 while served over REST.", labels=topic_labels)
    standby = GaugeMetricFamily(
        "tradeloop_topic_standby",
        "1 while another engine of the Redis group owns the stream (its age grows then; nothing is stuck).",
        labels=topic_labels,
    )
    rest_errors = CounterMetricFamily("tradeloop_topic_rest_errors", "Failed REST calls.", labels=topic_labels)
    watch_errors = CounterMetricFamily("tradeloop_topic_watch_errors", "Failed watch loops.", labels=topic_labels)
    subscriber_labels = [*topic_labels, "subscriber"]
    lag = GaugeMetricFamily("tradeloop_subscriber_lag", "Items buffered, not yet taken.", labels=subscriber_labels)
    dropped = CounterMetricFamily(
        "tradeloop_subscriber_dropped", "Items dropped by the slow-consumer policy.", labels=subscriber_labels
    )
    for topic in health.topics:
        values = [topic.exchange, str(topic.topic)]
        topic_messages.add_metric(values, topic.messages)
        if topic.topic.kind is TopicKind.KLINE:  # candle counts of a tick topic would be 0, or wrong
            closed.add_metric(values, topic.closed_candles)
            backfilled.add_metric(values, topic.backfilled_candles)
        rest_mode.add_metric(values, float(topic.mode == "rest"))
        standby.add_metric(values, float(topic.state == "standby"))
        rest_errors.add_metric(values, topic.rest_errors)
        watch_errors.add_metric(values, topic.watch_errors)
        if topic.last_message_age is not None:
            age.add_metric(values, topic.last_message_age)
        for subscriber in topic.subscribers:
            lag.add_metric([*values, subscriber.name], subscriber.lag)
            dropped.add_metric([*values, subscriber.name], subscriber.dropped)
    yield from (topic_messages, closed, backfilled, age, rest_mode, standby, rest_errors, watch_errors, lag, dropped)


def _engine_metrics(engine: EngineStatus) -> Iterator[Metric]:
    risk, books = engine.risk, engine.portfolio
    yield CounterMetricFamily("tradeloop_orders", "Paper orders placed.", value=risk.orders)
    yield CounterMetricFamily("tradeloop_fills", "Fills in this run.", value=engine.trades)
    yield CounterMetricFamily("tradeloop_signals", "Strategy signals.", value=risk.signals)
    rejections = CounterMetricFamily("tradeloop_risk_rejections", "Signals refused, by reason.", labels=["reason"])
    for reason, count in risk.rejections.items():
        rejections.add_metric([str(reason)], count)
    yield rejections
    for name, value, text in (
        ("equity", books.equity, "Equity, quote currency."),
        ("cash", books.cash, "Cash, quote currency."),
        ("realised_pnl", books.realised_pnl, "Realised profit and loss."),
        ("unrealised_pnl", books.unrealised_pnl, "Unrealised profit and loss."),
        ("fees", books.fees, "Fees paid."),
        ("max_drawdown", books.max_drawdown, "Largest fall from peak equity."),
    ):
        yield GaugeMetricFamily(f"tradeloop_{name}", text, value=float(value))
    yield GaugeMetricFamily("tradeloop_kill_switch", "1 once the kill switch tripped.", value=float(risk.killed))


def _publisher_metrics(stats: PublisherStats) -> Iterator[Metric]:
    yield CounterMetricFamily("tradeloop_published_klines", "Closed candles appended.", value=stats.klines)
    yield CounterMetricFamily("tradeloop_published_ticks", "Ticks appended.", value=stats.ticks)
    yield CounterMetricFamily(
        "tradeloop_publish_duplicates", "Candles Redis already had (not published twice).", value=stats.duplicates
    )
    yield CounterMetricFamily(
        "tradeloop_publish_backfilled", "Candles backfilled over REST at start.", value=stats.backfilled
    )
    yield CounterMetricFamily("tradeloop_redis_retries", "Redis commands retried.", value=stats.redis_retries)


def _sim_metrics(stats: SimStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "tradeloop_sim_connections_open", "Open WebSocket connections.", value=stats.connections_open
    )
    yield CounterMetricFamily("tradeloop_sim_frames_sent", "Frames sent.", value=stats.frames_sent)
    yield GaugeMetricFamily("tradeloop_sim_subscriptions", "Live subscriptions.", value=stats.subscriptions)
