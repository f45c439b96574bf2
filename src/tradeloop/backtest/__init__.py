"""Backtests with live parity: the trading engine, unchanged, on historical candles in virtual time.

A backtest is the live loop against history: the same :class:`~tradeloop.trading.TradingEngine`,
strategies, risk manager, portfolio and journal, fed by :class:`HistoricalMarketData` through the
engine's market-data seam, under Trio's ``MockClock`` so that a year of one-minute candles runs in
seconds. ``tradeloop backtest`` wraps it: history from the exchange (cached) or a CSV file, a
report (``report.json``, ``equity.png``) and a summary.
"""

from __future__ import annotations

from .cache import load_exchange_history
from .csvfile import read_csv
from .history import CandleSeries, Gap, MarketHistory, SeriesBuilder, series_from_klines
from .journal import BacktestJournal, EquityPoint, read_equity
from .runner import BacktestResult, run_backtest
from .source import HistoricalMarketData, ReplayProgress

__all__ = [
    "BacktestJournal",
    "BacktestResult",
    "CandleSeries",
    "EquityPoint",
    "Gap",
    "HistoricalMarketData",
    "MarketHistory",
    "ReplayProgress",
    "SeriesBuilder",
    "load_exchange_history",
    "read_csv",
    "read_equity",
    "run_backtest",
    "series_from_klines",
]
