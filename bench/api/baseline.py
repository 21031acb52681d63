"""The baseline: the same two endpoints written the common way (bench-only code).

FastAPI + SQLAlchemy 2 ORM (async, asyncpg driver) + pydantic v2, as the earlier Kirby
served them: each request resolves the starlisting with an ORM join, loads candles as ORM
objects, converts them to pydantic models and lets FastAPI serialise them. Same queries and
semantics as Kirby's (latest-N, or the first N from start_time; ascending; decimals as
strings), same database.

    BASELINE_DATABASE_URL=postgresql+asyncpg://... uvicorn bench.api.baseline:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, field_serializer
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, Numeric, SmallInteger, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Exchange(Base):
    __tablename__ = "exchanges"
    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String)


class Coin(Base):
    __tablename__ = "coins"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(String)


class QuoteCurrency(Base):
    __tablename__ = "quote_currencies"
    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    symbol: Mapped[str] = mapped_column(String)


class MarketType(Base):
    __tablename__ = "market_types"
    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String)


class Interval(Base):
    __tablename__ = "intervals"
    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    seconds: Mapped[int] = mapped_column(Integer)


class Starlisting(Base):
    __tablename__ = "starlistings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id"))
    coin_id: Mapped[int] = mapped_column(ForeignKey("coins.id"))
    quote_currency_id: Mapped[int] = mapped_column(ForeignKey("quote_currencies.id"))
    market_type_id: Mapped[int] = mapped_column(ForeignKey("market_types.id"))
    interval_id: Mapped[int] = mapped_column(ForeignKey("intervals.id"))
    trading_pair_id: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    exchange: Mapped[Exchange] = relationship(lazy="joined")
    coin: Mapped[Coin] = relationship(lazy="joined")
    quote_currency: Mapped[QuoteCurrency] = relationship(lazy="joined")
    market_type: Mapped[MarketType] = relationship(lazy="joined")
    interval: Mapped[Interval] = relationship(lazy="joined")


class Candle(Base):
    __tablename__ = "candles"
    starlisting_id: Mapped[int] = mapped_column(ForeignKey("starlistings.id"), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    open: Mapped[Decimal] = mapped_column(Numeric)
    high: Mapped[Decimal] = mapped_column(Numeric)
    low: Mapped[Decimal] = mapped_column(Numeric)
    close: Mapped[Decimal] = mapped_column(Numeric)
    volume: Mapped[Decimal] = mapped_column(Numeric)
    trade_count: Mapped[int | None] = mapped_column(Integer)


class CandleResponse(BaseModel):
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    num_trades: int | None

    @field_serializer("open", "high", "low", "close", "volume")
    def _exact(self, value: Decimal) -> str:
        return str(value)


class CandleMetadata(BaseModel):
    exchange: str
    coin: str
    quote: str
    trading_pair: str
    market_type: str
    interval: str
    count: int


class CandleListResponse(BaseModel):
    data: list[CandleResponse]
    metadata: CandleMetadata


class StarlistingResponse(BaseModel):
    id: int
    exchange: str
    coin: str
    quote: str
    trading_pair: str
    market_type: str
    interval: str
    interval_seconds: int
    active: bool


class StarlistingListResponse(BaseModel):
    starlistings: list[StarlistingResponse]
    total_count: int


engine = create_async_engine(os.environ["BASELINE_DATABASE_URL"], pool_size=10)
sessions = async_sessionmaker(engine, expire_on_commit=False)


async def session() -> AsyncIterator[AsyncSession]:
    async with sessions() as s:
        yield s


Session = Annotated[AsyncSession, Depends(session)]


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/starlistings", response_model=StarlistingListResponse)
async def list_starlistings(db: Session) -> StarlistingListResponse:
    rows = (await db.scalars(select(Starlisting).order_by(Starlisting.id))).all()
    items = [
        StarlistingResponse(
            id=s.id,
            exchange=s.exchange.name,
            coin=s.coin.symbol,
            quote=s.quote_currency.symbol,
            trading_pair=f"{s.coin.symbol}/{s.quote_currency.symbol}",
            market_type=s.market_type.name,
            interval=s.interval.name,
            interval_seconds=s.interval.seconds,
            active=s.active,
        )
        for s in rows
    ]
    return StarlistingListResponse(starlistings=items, total_count=len(items))


@app.get("/candles/{exchange}/{coin}/{quote}/{market_type}/{interval}")
async def get_candles(
    exchange: str,
    coin: str,
    quote: str,
    market_type: str,
    interval: str,
    db: Session,
    start_time: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> CandleListResponse:
    star = await db.scalar(
        select(Starlisting)
        .join(Starlisting.exchange)
        .join(Starlisting.coin)
        .join(Starlisting.quote_currency)
        .join(Starlisting.market_type)
        .join(Starlisting.interval)
        .where(
            Exchange.name == exchange,
            Coin.symbol == coin,
            QuoteCurrency.symbol == quote,
            MarketType.name == market_type,
            Interval.name == interval,
        )
    )
    if star is None:
        raise HTTPException(404, "unknown starlisting")
    query = select(Candle).where(Candle.starlisting_id == star.id)
    if start_time is None:
        candles = list(
            reversed((await db.scalars(query.order_by(Candle.time.desc()).limit(limit))).all())
        )
    else:
        query = query.where(Candle.time >= start_time).order_by(Candle.time).limit(limit)
        candles = list((await db.scalars(query)).all())
    data = [
        CandleResponse(
            time=c.time,
            open=c.open,
            high=c.high,
            low=c.low,
            close=c.close,
            volume=c.volume,
            num_trades=c.trade_count,
        )
        for c in candles
    ]
    return CandleListResponse(
        data=data,
        metadata=CandleMetadata(
            exchange=star.exchange.name,
            coin=star.coin.symbol,
            quote=star.quote_currency.symbol,
            trading_pair=f"{star.coin.symbol}/{star.quote_currency.symbol}",
            market_type=star.market_type.name,
            interval=star.interval.name,
            count=len(data),
        ),
    )
