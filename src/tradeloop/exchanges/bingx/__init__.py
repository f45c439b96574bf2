"""BingX: USDT-M perpetual swap and spot public market data (work in progress)."""
