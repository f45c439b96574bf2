"""The trade loop: strategies, risk, paper execution, the journal and the engine that runs them.

Start with :class:`TradingEngine` and :class:`EngineConfig` (or ``tradeloop run``); write a
strategy as shown in :mod:`tradeloop.trading.strategy`.
"""

from __future__ import annotations

from ..models import Fill, Order, Position, Side, Signal
from .config import EngineConfig, config_from_mapping, load_config
from .engine import EngineStatus, RunSummary, TradingEngine
from .journal import Journal, JournalError, JournalSnapshot, RejectionRecord, RiskRecord
from .portfolio import MarketBook, PortfolioManager, PortfolioSnapshot
from .risk import Rejection, RejectReason, RiskLimits, RiskManager, RiskState
from .strategies import STRATEGY_TYPES, Breakout, PriceSeriesStrategy, SmaCrossover, create_strategy
from .strategy import Strategy, StrategyCoordinator, StrategyStatus

__all__ = [
    "STRATEGY_TYPES",
    "Breakout",
    "EngineConfig",
    "EngineStatus",
    "Fill",
    "Journal",
    "JournalError",
    "JournalSnapshot",
    "MarketBook",
    "Order",
    "PortfolioManager",
    "PortfolioSnapshot",
    "Position",
    "PriceSeriesStrategy",
    "RejectReason",
    "Rejection",
    "RejectionRecord",
    "RiskLimits",
    "RiskManager",
    "RiskRecord",
    "RiskState",
    "RunSummary",
    "Side",
    "Signal",
    "SmaCrossover",
    "Strategy",
    "StrategyCoordinator",
    "StrategyStatus",
    "TradingEngine",
    "config_from_mapping",
    "create_strategy",
    "load_config",
]
