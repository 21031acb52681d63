"""Binance exchangeInfo documents: the markets ccxt's `load_markets` builds from.

Minimal but valid for ccxt: per symbol the fields its `parse_market` reads (status, assets,
precisions, PRICE_FILTER / LOT_SIZE / notional filters, contract type and margin asset for
futures). Spot prices and sizes are printed with 8 decimals; USD-M filters use the
contract's own precision. COIN-M lists its perpetuals only so that ccxt's default market
types load; it serves no klines.
"""

from __future__ import annotations

from typing import Any

from kirby_sim.universe import BINANCE_ASSETS, BINANCE_COIN_M, Instrument
from kirby_sim.wire import fixed_decimal

_PERPETUAL_DELIVERY = 4133404800000
_FUTURES_ORDER_TYPES = [
    "LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]  # fmt: skip


def exchange_info(
    prefix: str, instruments: list[Instrument], now_ms: int, weight_per_minute: int
) -> dict[str, Any]:
    """The exchangeInfo of the API family at `prefix` (/api/v3, /fapi/v1 or /dapi/v1)."""
    info: dict[str, Any] = {
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": weight_per_minute},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        ],
        "exchangeFilters": [],
    }  # fmt: skip
    if prefix == "/api/v3":
        info["symbols"] = [_spot_symbol(inst) for inst in instruments]
    elif prefix == "/fapi/v1":
        info["futuresType"] = "U_MARGINED"
        info["assets"] = [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "0"}]
        info["symbols"] = [_usdm_symbol(inst) for inst in instruments]
    else:
        info["symbols"] = [_coinm_symbol(coin) for coin in BINANCE_COIN_M]
    return info


def _step(decimals: int, shown: int) -> str:
    """The smallest increment at `decimals`, printed with `shown` decimals."""
    return fixed_decimal(1, decimals, shown)


def _spot_symbol(inst: Instrument) -> dict[str, Any]:
    return {
        "symbol": inst.symbol,
        "status": "TRADING",
        "baseAsset": inst.coin,
        "baseAssetPrecision": 8,
        "quoteAsset": "USDT",
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _step(inst.price_decimals, 8),
                "maxPrice": "1000000.00000000",
                "tickSize": _step(inst.price_decimals, 8),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _step(inst.size_decimals, 8),
                "maxQty": "9000000.00000000",
                "stepSize": _step(inst.size_decimals, 8),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _usdm_symbol(inst: Instrument) -> dict[str, Any]:
    tick = fixed_decimal(inst.tick_units, inst.price_decimals, inst.price_decimals)
    step = _step(inst.size_decimals, inst.size_decimals)
    return {
        "symbol": inst.symbol,
        "pair": inst.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": _PERPETUAL_DELIVERY,
        "onboardDate": inst.listed_ms,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": inst.coin,
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": inst.price_decimals,
        "quantityPrecision": inst.size_decimals,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "4529764",
                "tickSize": tick,
            },
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "1000000", "stepSize": step},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": step,
                "maxQty": "1000000",
                "stepSize": step,
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
        ],
        "orderTypes": _FUTURES_ORDER_TYPES,
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def _coinm_symbol(coin: str) -> dict[str, Any]:
    asset = next(asset for asset in BINANCE_ASSETS if asset.coin == coin)
    return {
        "symbol": f"{coin}USD_PERP",
        "pair": f"{coin}USD",
        "contractType": "PERPETUAL",
        "deliveryDate": _PERPETUAL_DELIVERY,
        "onboardDate": asset.futures_listed_ms,
        "contractStatus": "TRADING",
        "contractSize": 100 if coin == "BTC" else 10,
        "marginAsset": coin,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": coin,
        "quoteAsset": "USD",
        "pricePrecision": 1 if coin == "BTC" else 2,
        "quantityPrecision": 0,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "equalQtyPrecision": 4,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "1000",
                "maxPrice": "4520958",
                "tickSize": "0.1" if coin == "BTC" else "0.01",
            },
            {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "1000000", "stepSize": "1"},
        ],
        "orderTypes": _FUTURES_ORDER_TYPES,
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }
