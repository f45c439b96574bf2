"""Engine configuration, from Python objects or a TOML file, validated before anything starts.

A TOML file (every table and field optional except ``exchanges`` and ``strategies``)::

    starting_cash = 10000          # quote currency (USDT); fixed for the life of a journal
    fee_rate = 0.0005              # fraction of notional per fill (0.0005 = 0.05%; at most 1%)
    slippage = 0.0001              # fraction the paper fill price moves against us (at most 5%)
    journal = "journal.sqlite"     # relative paths are relative to this file
    snapshot_interval = 10         # seconds between equity snapshots in the journal

    [exchanges.bingx]              # names are case-insensitive; fields are the client's URLs
    ws_url = "wss://open-api-swap.bingx.com/swap-market"

    [risk]                         # see tradeloop.trading.risk for every limit
    max_order_notional = 2000
    max_drawdown = 0.2

    [streams]                      # optional tuning, see tradeloop.streams.StreamConfig
    stall_timeout = 40

    [data]                         # optional: market data from Redis instead of the exchanges'
    source = "redis://localhost:6379/0"   # sockets; see tradeloop.distributed.consumer
    group = "desk"                 #   engines of a group share the kline streams
    consumer = "engine-1"          #   this engine's name in the group, kept across restarts

    [publish]                      # read by `tradeloop publish --config`, ignored by `run`:
    redis = "redis://localhost:6379/0"    # see tradeloop.distributed.publisher
    exchange = "bingx"
    symbols = ["BTC/USDT:USDT"]
    timeframes = ["1m"]
    ticks = true

    [[strategies]]
    type = "sma_crossover"         # or "breakout"; the other keys are the strategy's parameters
    symbols = ["BTC/USDT:USDT"]
    fast = 10
    slow = 30
    size = 500

Every mistake is a ValueError naming the field, and a fraction is shown as the percentage it is:
``config [risk]: risk limit 'max_drawdown' 2 = 200% of the peak; expected a fraction above 0 and
at most 1 (0.2 = 20%)``, ``config: fee_rate 0.5 = 50% per fill; expected 0 to 1%``. Numbers
become :class:`~decimal.Decimal` through their text, so ``0.0005`` in the file is exactly
``Decimal("0.0005")``.
"""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ..distributed.settings import PublishSettings, PublishTopics, RedisSourceSettings
from ..errors import InvalidValueError
from ..exchanges import Exchange, available_exchanges, exchange_class, normalize_exchange_name
from ..streams import StreamConfig
from ..symbols import parse_symbol, validate_timeframe
from .risk import RiskLimits, percent
from .strategies import create_strategy
from .strategy import Strategy, strategy_exchange

__all__ = ["MAX_CONFIG_SIZE", "EngineConfig", "PublishConfig", "load_config", "load_publish_config"]

DEFAULT_JOURNAL = Path("tradeloop-journal.sqlite")

_FRACTION_LIMITS = {"fee_rate": (Decimal("0.01"), "per fill"), "slippage": (Decimal("0.05"), "of the price")}
"""Sane upper bounds of the fractions: a fee of 0.5 is a typo for 0.0005 (or for 0.5%), not a fee."""


@dataclass(frozen=True)
class EngineConfig:
    """Everything a :class:`~tradeloop.trading.engine.TradingEngine` needs.

    ``exchanges`` maps a registry name (any case) to a client, or to the keyword arguments that
    build one (its URLs). After construction it maps lower-case names to clients.
    """

    exchanges: Mapping[str, Exchange | Mapping[str, Any]]
    strategies: Sequence[Strategy]
    risk: RiskLimits = field(default_factory=RiskLimits)
    starting_cash: Decimal = Decimal(10_000)
    fee_rate: Decimal = Decimal("0.0005")
    slippage: Decimal = Decimal(0)
    journal: Path = DEFAULT_JOURNAL
    snapshot_interval: float = 10.0
    streams: StreamConfig = field(default_factory=StreamConfig)
    data: RedisSourceSettings | None = None
    """Read market data from Redis (the ``[data]`` table) instead of the exchanges' sockets."""

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "exchanges", _build_exchanges(self.exchanges))
        for name in ("starting_cash", "fee_rate", "slippage"):
            set_field(self, name, _non_negative(name, getattr(self, name)))
        if not self.starting_cash:
            raise InvalidValueError("config field 'starting_cash': expected an amount > 0 of quote currency, got 0")
        for name, (highest, per) in _FRACTION_LIMITS.items():
            value = getattr(self, name)
            if value > highest:
                raise InvalidValueError(
                    f"config: {name} {value} = {percent(value)} {per}; expected 0 to {percent(highest)}"
                )
        if not isinstance(self.risk, RiskLimits):
            raise InvalidValueError(f"config field 'risk': expected RiskLimits, got {self.risk!r}")
        if not isinstance(self.streams, StreamConfig):
            raise InvalidValueError(f"config field 'streams': expected StreamConfig, got {self.streams!r}")
        if self.data is not None and not isinstance(self.data, RedisSourceSettings):
            raise InvalidValueError(f"config field 'data': expected RedisSourceSettings, got {self.data!r}")
        if not isinstance(self.journal, str | Path) or not str(self.journal):
            raise InvalidValueError(f"config field 'journal': expected a file path, got {self.journal!r}")
        set_field(self, "journal", Path(self.journal))
        interval = self.snapshot_interval
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
            raise InvalidValueError(f"config field 'snapshot_interval': expected seconds > 0, got {interval!r}")
        set_field(self, "strategies", tuple(self.strategies))
        self._check_strategies()

    @property
    def clients(self) -> dict[str, Exchange]:
        """The exchange clients by lower-case name (``exchanges`` once validated)."""
        return {name: client for name, client in self.exchanges.items() if isinstance(client, Exchange)}

    def strategy_exchange(self, strategy: Strategy) -> str:
        """The exchange ``strategy`` trades on: its own ``exchange``, else the only one configured."""
        return strategy_exchange(strategy) or next(iter(self.exchanges))

    def _check_strategies(self) -> None:
        if not self.strategies:
            raise InvalidValueError("config field 'strategies': at least one strategy is needed")
        names: set[str] = set()
        for index, strategy in enumerate(self.strategies):
            where = f"config field 'strategies[{index}]'"
            if not isinstance(strategy, Strategy):
                lacking = [name for name in _STRATEGY_MEMBERS if not hasattr(strategy, name)]
                raise InvalidValueError(
                    f"{where}: {type(strategy).__name__} is not a Strategy: it lacks {', '.join(lacking)} "
                    f"(a strategy has {', '.join(_STRATEGY_MEMBERS)})"
                )
            if strategy.name in names:
                raise InvalidValueError(f"{where}: strategy name {strategy.name!r} is used twice; names must be unique")
            names.add(strategy.name)
            try:
                exchange = strategy_exchange(strategy)
            except ValueError as exc:
                raise InvalidValueError(f"{where}: {exc}") from None
            if exchange is None and len(self.exchanges) > 1:
                raise InvalidValueError(f"{where}: set 'exchange' to one of {', '.join(self.exchanges)}")
            if exchange is not None and exchange not in self.exchanges:
                raise InvalidValueError(
                    f"{where}: exchange {exchange!r} is not configured; configured: {', '.join(self.exchanges)}"
                )
            if not isinstance(strategy.warmup, int) or strategy.warmup < 0:
                raise InvalidValueError(f"{where}: warmup must be an integer >= 0, got {strategy.warmup!r}")
            if isinstance(strategy.symbols, str) or not isinstance(strategy.symbols, Sequence):
                raise InvalidValueError(
                    f"{where} (strategy {strategy.name!r}): symbols must be a list or tuple of unified "
                    f"symbols, got {strategy.symbols!r}"
                )
            try:
                for symbol in strategy.symbols:
                    parse_symbol(symbol)
                if strategy.timeframe is not None:
                    validate_timeframe(strategy.timeframe)
            except ValueError as exc:  # named here, not from the streams once the engine runs
                raise InvalidValueError(f"{where} (strategy {strategy.name!r}): {exc}") from None


_STRATEGY_MEMBERS = ("name", "symbols", "timeframe", "warmup", "on_kline", "on_tick")
"""What :class:`~tradeloop.trading.strategy.Strategy` asks of a strategy, as error messages list it."""

MAX_CONFIG_SIZE = 1024 * 1024
"""Bytes a config file may have: a real one is a few KB; a bigger file (or a device, or a
mistyped path to a data file) is refused before it is parsed."""
MAX_CONFIG_DEPTH = 16
"""Tables and arrays nested in a config file (the deepest real field, a strategy's symbols, is 4)."""
_MAX_MESSAGE = 500
"""Characters of an error message about a file: one quoting a 1 MB value is cut to this."""


def load_config(path: str | Path, **overrides: Any) -> EngineConfig:
    """Read and validate a TOML config file; ``overrides`` replace fields (e.g. ``journal``).

    Bounded: at most :data:`MAX_CONFIG_SIZE` bytes are read, tables and arrays nested beyond
    :data:`MAX_CONFIG_DEPTH` are refused before validation (nesting too deep for the parser's
    own recursion, too), and the ValueError for any mistake is one line of at most 500 characters.
    """
    path = Path(path)
    data = _read_toml(path)
    try:
        config = config_from_mapping(data, base_dir=path.parent)
    except ValueError as exc:
        message = str(exc)
        if len(message) <= _MAX_MESSAGE:
            raise
        raise InvalidValueError(f"{message[:_MAX_MESSAGE]}… ({len(message)} characters)") from None
    return dataclasses.replace(config, **overrides) if overrides else config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_SIZE + 1)
        if len(raw) > MAX_CONFIG_SIZE:
            raise InvalidValueError(f"config file {path} is larger than {MAX_CONFIG_SIZE} bytes: not a config")
        data = tomllib.loads(raw.decode())
    except OSError as exc:
        raise InvalidValueError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValueError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # tomllib decodes the whole file before parsing
        raise InvalidValueError(f"config file {path} is not valid TOML: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise InvalidValueError(f"config file {path} is not valid TOML: values nested too deeply") from None
    if _depth(data) > MAX_CONFIG_DEPTH:
        raise InvalidValueError(f"config file {path}: tables and arrays nested deeper than {MAX_CONFIG_DEPTH} levels")
    return data


def _depth(document: dict[str, Any]) -> int:
    """How deep tables and arrays nest in a parsed document (itself 1), without recursion."""
    deepest = 0
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in children)
    return deepest


def config_from_mapping(data: Mapping[str, Any], *, base_dir: Path = Path()) -> EngineConfig:
    """Build an EngineConfig from parsed TOML (or any mapping of the same shape)."""
    allowed = {"exchanges", "strategies", "risk", "streams", "data", "publish", *_SCALARS}
    _check_keys("config", data, allowed)
    for required in ("exchanges", "strategies"):
        if required not in data:
            raise InvalidValueError(f"config: field {required!r} is missing")
    exchanges = _table("exchanges", data["exchanges"])
    for name, options in exchanges.items():
        _table(f"exchanges.{name}", options)
    entries = data["strategies"]
    if not isinstance(entries, list):
        raise InvalidValueError("config field 'strategies': expected an array of tables ([[strategies]])")
    strategies = [_strategy(index, entry) for index, entry in enumerate(entries)]
    scalars: dict[str, Any] = {key: data[key] for key in _SCALARS if key in data}
    if "journal" in scalars:
        journal = scalars["journal"]
        if not isinstance(journal, str) or not journal:
            raise InvalidValueError(f"config field 'journal': expected a file path, got {journal!r}")
        scalars["journal"] = base_dir / journal
    return EngineConfig(
        exchanges=exchanges,
        strategies=strategies,
        risk=_build("risk", RiskLimits, data.get("risk", {})),
        streams=_build("streams", StreamConfig, data.get("streams", {})),
        data=_build("data", RedisSourceSettings, data["data"]) if "data" in data else None,
        **scalars,
    )


@dataclass(frozen=True)
class PublishConfig:
    """What ``tradeloop publish --config FILE`` runs: the ``[publish]`` table and the exchanges."""

    redis: str
    topics: PublishTopics
    settings: PublishSettings
    exchanges: Mapping[str, Exchange]


def load_publish_config(path: str | Path) -> PublishConfig:
    """Read the ``[publish]`` table and ``[exchanges]`` of a TOML file (strategies not needed)."""
    path = Path(path)
    data = _read_toml(path)
    if "publish" not in data:
        raise InvalidValueError(f"config file {path} has no [publish] table")
    table = dict(_table("publish", data["publish"]))
    redis = table.pop("redis", None)
    if not isinstance(redis, str) or not redis:
        raise InvalidValueError("config [publish]: 'redis' is missing (e.g. redis = \"redis://localhost:6379/0\")")
    topic_fields = {f.name for f in dataclasses.fields(PublishTopics)}
    topics = _build("publish", PublishTopics, {k: v for k, v in table.items() if k in topic_fields})
    settings = _build("publish", PublishSettings, {k: v for k, v in table.items() if k not in topic_fields})
    exchange = normalize_exchange_name(topics.exchange)
    exchanges = _build_exchanges({exchange: _table("exchanges", data.get("exchanges", {})).get(exchange, {})})
    return PublishConfig(redis, dataclasses.replace(topics, exchange=exchange), settings, exchanges)


_SCALARS = ("starting_cash", "fee_rate", "slippage", "journal", "snapshot_interval")


def _strategy(index: int, entry: object) -> Strategy:
    where = f"config field 'strategies[{index}]'"
    params = dict(_table(f"strategies[{index}]", entry))
    kind = params.pop("type", None)
    if not isinstance(kind, str):
        raise InvalidValueError(f"{where}: 'type' is missing (e.g. type = \"sma_crossover\")")
    try:
        return create_strategy(kind, params)
    except ValueError as exc:
        raise InvalidValueError(f"{where}: {exc}") from None


def _build(name: str, cls: type[Any], table: object) -> Any:
    """Instantiate a dataclass from a config table, naming unknown and bad fields."""
    values = _table(name, table)
    _check_keys(f"config [{name}]", values, {f.name for f in dataclasses.fields(cls)})
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"config [{name}]: {exc}") from None


def _table(name: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidValueError(f"config field {name!r}: expected a table, got {value!r}")
    return value


def _check_keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidValueError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _non_negative(name: str, value: object) -> Decimal:
    try:
        number = Decimal(str(value)) if isinstance(value, Decimal | int | float | str) else None
    except InvalidOperation:
        number = None
    if isinstance(value, bool) or number is None or not number.is_finite() or number < 0:
        raise InvalidValueError(f"config field {name!r}: expected a number >= 0, got {value!r}")
    return number


def _build_exchanges(exchanges: Mapping[str, Exchange | Mapping[str, Any]]) -> dict[str, Exchange]:
    if not isinstance(exchanges, Mapping) or not exchanges:
        raise InvalidValueError(f"config field 'exchanges': name at least one of {', '.join(available_exchanges())}")
    built: dict[str, Exchange] = {}
    for raw_name, spec in exchanges.items():
        where = f"config field 'exchanges.{raw_name}'"
        try:
            name = normalize_exchange_name(raw_name)
            cls = exchange_class(name)
        except ValueError as exc:
            raise InvalidValueError(f"{where}: {exc}") from None
        if name in built:
            raise InvalidValueError(f"{where}: exchange {name!r} is configured twice")
        if isinstance(spec, Exchange):
            built[name] = spec
            continue
        options = _table(f"exchanges.{raw_name}", spec)
        accepted = {
            p.name for p in inspect.signature(cls).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        _check_keys(where, options, accepted)
        for key, value in options.items():
            if key == "poll":  # a ccxt:<id> exchange: fetch, never watch
                if not isinstance(value, bool):
                    raise InvalidValueError(f"{where}: field 'poll' must be true or false, got {value!r}")
            elif not isinstance(value, str) or not value:
                raise InvalidValueError(f"{where}: field {key!r} must be a URL string, got {value!r}")
        try:
            built[name] = cls(**options)
        except InvalidValueError as exc:  # a bad URL: say where it was written
            raise InvalidValueError(f"{where}: {exc}") from None
    return built
