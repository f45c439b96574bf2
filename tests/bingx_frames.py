"""BingX messages verbatim from /work/shared/BINGX.md §5 (and JK captures it cites), as the server sends them.

Server frames are shown after gunzip; tests send each one both gzipped (the real framing) and as a
text frame. ``[R]`` marks a message reconstructed from the documented format, not a capture.
"""

from __future__ import annotations

# --- WebSocket, client -> server ------------------------------------------------------------------
SWAP_SUBSCRIBE = '{"id":"e745cd6d-d0f6-4a70-8d5a-043e4c741b40","reqType": "sub","dataType":"BTC-USDT@kline_1m"}'
"""§5.1."""
SWAP_UNSUBSCRIBE = '{"id":"24dd0e35-56a4-4f7a-af8a-394c7060909c","reqType":"unsub","dataType":"BTC-USDT@ticker"}'
"""§5.16."""

# --- WebSocket, server -> client ------------------------------------------------------------------
SWAP_ACK = '{"id":"e745cd6d-d0f6-4a70-8d5a-043e4c741b40","code":0,"msg":"","dataType":"","data":null}'
"""§5.2."""
SPOT_ACK = '{"code":0,"id":"e745cd6d-d0f6-4a70-8d5a-043e4c741b40","msg":"SUCCESS","timestamp":1760066281286}'
"""§5.3."""
SWAP_KLINE = (
    '{"code":0,"dataType":"BTC-USDT@kline_1m","s":"BTC-USDT","data":[{"c":"121697.7","o":"121684.1",'
    '"h":"121697.7","l":"121638.7","v":"5.8244","T":1759997460000}]}'
)
"""§5.4."""
SPOT_KLINE = (
    '{"code":0,"data":{"E":1760066282349,"K":{"T":1760066339999,"c":"121137.93299999999","h":"121137.946",'
    '"i":"1min","l":"121137.93299999999","n":4,"o":"121137.946","q":"3131.052371","s":"BTC-USDT",'
    '"t":1760066280000,"v":"0.025847000000000000"},"e":"kline","s":"BTC-USDT"},"dataType":"BTC-USDT@kline_1min",'
    '"success":true}'
)
"""§5.7."""
SWAP_TICKER = (
    '{"code":0,"dataType":"BTC-USDT@ticker","data":{"e":"24hTicker","E":1759998119388,"s":"BTC-USDT",'
    '"p":"-262.0","P":"-0.21","c":"121621.7","L":"0.0010","h":"124152.9","l":"121412.0","v":"17030.6463",'
    '"q":"210028.10","o":"121883.7","O":1759998027573,"C":1759998119403,"A":"121621.7","a":"11.3115",'
    '"B":"121621.5","b":"6.4426"}}'
)
"""§5.9."""
SPOT_TICKER = (
    '{"code":0,"timestamp":1760066441401,"dataType":"BTC-USDT@ticker","data":{"e":"24hTicker","E":1760066441399,'
    '"s":"BTC-USDT","p":-632.32,"P":"-0.52%","o":121931.93,"h":123750,"l":119666.27,"c":121299.61,"v":3087.49,'
    '"q":375356180.14,"O":1759980041399,"C":1760066441399,"A":121300,"a":0.00013099999999999999,'
    '"B":121291.64,"b":9.293124}}'
)
"""§5.11."""
SWAP_PING = "Ping"
"""§5.13 (text verbatim; the server gzips it)."""
SPOT_PING = '{"ping":"2177c68e4d0e45679965f482929b59c2","time":"2022-06-07T16:27:36.323+0800"}'
SPOT_PONG = '{"pong":"2177c68e4d0e45679965f482929b59c2","time":"2022-06-07T16:27:36.323+0800"}'
"""§5.13: the reply the client must send to SPOT_PING."""
SWAP_ERROR = '{"id":"","code":80014,"msg":"invalid params","dataType":"","data":null}'
"""§5.14 (ccxt#29052)."""
SPOT_ERROR = '{"code":100500,"id":"9cd37d32-da98-440b-bd04-37e7dbcf51ad","msg":"","timestamp":1696245842307}'
"""§5.14 (ccxt comment)."""
SWAP_BOOK_TICKER = (
    '{"code":0,"dataType":"BTC-USDT@bookTicker","data":{"e":"bookTicker","u":578534658,"E":1760001840686,'
    '"T":1760001840687,"s":"BTC-USDT","b":"121584.1","B":"18.7084","a":"121584.3","A":"4.9602"}}'
)
"""§5.17."""
SWAP_MARK_PRICE = (
    '{"code":0,"dataType":"ETH-USDT@markPrice","data":{"e":"markPriceUpdate","E":1714650884021,'
    '"s":"ETH-USDT","p":"2999.63"}}'
)
"""JK capture ``Subscriptions/PerpetualFutures/MarkPrice.txt`` (BINGX.md §2.6 gives the fields)."""
SWAP_LAST_PRICE = (
    '{"code":0,"dataType":"ETH-USDT@lastPrice","data":{"e":"lastPriceUpdate","E":1714650774894,'
    '"s":"ETH-USDT","c":"2988.90"}}'
)
"""JK capture ``Subscriptions/PerpetualFutures/Price.txt``."""
SPOT_LAST_PRICE = (
    '{"code":0,"data":{"c":"57793.37","e":"lastPriceUpdate","s":"BTC-USDT"},"dataType":"BTC-USDT@lastPrice",'
    '"success":true}'
)
"""JK capture ``Subscriptions/Spot/Price.txt``: no event time anywhere."""
SPOT_BOOK_TICKER = (
    '{"code":0,"data":{"A":"24.887920","B":"2.580800","E":1714648924917,"a":"2996.49","b":"2996.46",'
    '"e":"bookTicker","s":"BTC-USDT"},"dataType":"BTC-USDT@bookTicker","success":true}'
)
"""JK capture ``Subscriptions/Spot/BookPrice.txt``."""
SWAP_KLINE_OLD_DICT = (
    '{"code":0,"dataType":"BTC-USDT@kline_1m","s":"BTC-USDT","data":{"c":"41000.5","o":"40990.1",'
    '"h":"41010.0","l":"40980.0","v":"12.5","T":1649832779999}}'
)
"""[R] the 2023 docs' dict-form push (BINGX.md §2.3), ``T`` close-style."""

SERVER_FRAMES = {
    "SWAP_ACK": SWAP_ACK,
    "SPOT_ACK": SPOT_ACK,
    "SWAP_KLINE": SWAP_KLINE,
    "SPOT_KLINE": SPOT_KLINE,
    "SWAP_TICKER": SWAP_TICKER,
    "SPOT_TICKER": SPOT_TICKER,
    "SWAP_PING": SWAP_PING,
    "SPOT_PING": SPOT_PING,
    "SWAP_ERROR": SWAP_ERROR,
    "SPOT_ERROR": SPOT_ERROR,
    "SWAP_BOOK_TICKER": SWAP_BOOK_TICKER,
    "SWAP_MARK_PRICE": SWAP_MARK_PRICE,
    "SWAP_LAST_PRICE": SWAP_LAST_PRICE,
    "SPOT_LAST_PRICE": SPOT_LAST_PRICE,
    "SPOT_BOOK_TICKER": SPOT_BOOK_TICKER,
}
"""Every server frame above by name, for the fuzzing tests."""

# --- REST bodies ----------------------------------------------------------------------------------
R1_SWAP_KLINES = (
    b'{"code":0,"msg":"","data":[{"open":"0.7034","close":"0.7065","high":"0.7081","low":"0.7033",'
    b'"volume":"635494.00","time":1702717200000}]}'
)
"""§5 R1: ``GET /openApi/swap/v3/quote/klines?symbol=KNC-USDT&interval=1h…``."""
R2_SPOT_KLINES = (
    b'{"code":0,"timestamp":1702720626772,"data":[[1702720620000,42216.29,42216.94,42216.29,42216.72,0.2,'
    b"1702720679999,8548.46],[1702720560000,42220.61,42221.1,42215.56,42216.63,2.93,1702720619999,123968.7],"
    b"[1702720500000,42182.59,42220.38,42182.59,42220.38,1.53,1702720559999,64851.33],[1702720440000,42182.84,"
    b"42183.16,42182.22,42182.81,2.54,1702720499999,107559.45],[1702720380000,42199.72,42204.53,42180.2,"
    b"42182.76,1.1,1702720439999,46549.09]]}"
)
"""§5 R2: ``GET /openApi/spot/v2/market/kline?symbol=BTC-USDT&interval=1m&limit=5`` (newest first)."""
R3_SWAP_TICKER = (
    b'{"code":0,"msg":"","data":{"symbol":"SFP-USDT","priceChange":"0.0295","priceChangePercent":"4.15",'
    b'"lastPrice":"0.7409","lastQty":"10","highPrice":"0.7506","lowPrice":"0.6903","volume":"4308212",'
    b'"quoteVolume":"3085449.53","openPrice":"0.7114","openTime":1702719833853,"closeTime":1702719798603,'
    b'"askPrice":"0.7414","askQty":"99","bidPrice":"0.7413","bidQty":"84"}}'
)
"""§5 R3: ``GET /openApi/swap/v2/quote/ticker?symbol=SFP-USDT…``."""
R4_SPOT_TICKER = (
    b'{"code":0,"timestamp":1702720823624,"data":[{"symbol":"BTC-USDT","openPrice":42827.65,"highPrice":42893.56,'
    b'"lowPrice":41648.71,"lastPrice":42215.15,"priceChange":1244.85,"priceChangePercent":"2.91%",'
    b'"volume":5099.21,"quoteVolume":214948771.34,"openTime":1702634423624,"closeTime":1702720823624,'
    b'"askPrice":42215.55,"askQty":2.20125,"bidPrice":42214.65,"bidQty":0.8962}]}'
)
"""§5 R4: ``GET /openApi/spot/v1/ticker/24hr?symbol=BTC-USDT…`` (``data`` is a list)."""
R5_SERVER_TIME = b'{"code": 0, "msg": "", "data": {"serverTime": 1675319535362}}'
"""§5 R5: ``GET /openApi/swap/v2/server/time``."""

RATE_LIMITED = b'{"code":100410,"msg":"The current system is busy, please try again later"}'
"""§3 (ccxt comment)."""
INVALID_PARAMS_AS_QUOTED = (
    b'{"code":80014,"msg":"Invalid parameters, err:Key: \'GetTickerRequest.Symbol\' Error:Field validation '
    b'for "Symbol" failed on the "len=0|endswith=-USDT" tag","data":{}}'
)
"""§3, as ccxt's comment quotes it: the inner quotes are not escaped, so this text is not JSON."""
INVALID_PARAMS = INVALID_PARAMS_AS_QUOTED.replace(b'"Symbol"', b'\\"Symbol\\"').replace(
    b'"len=0|endswith=-USDT"', b'\\"len=0|endswith=-USDT\\"'
)
"""The same reply as the server would send it, inner quotes escaped."""
