"""The results store's tables. Every name carries the ``hbfp_`` prefix so that Optuna's tables
can live in the same database; a change here needs a revision in ``migrations/versions``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

PREFIX = "hbfp_"


def utcnow() -> datetime:
    """Naive UTC, the store's time: SQLite keeps no time zones."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    __tablename__ = PREFIX + "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class SweepRow(Base):
    __tablename__ = PREFIX + "sweeps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec_yaml: Mapped[str] = mapped_column(Text)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    python_version: Mapped[str] = mapped_column(String(32))
    torch_version: Mapped[str] = mapped_column(String(64))
    hbfp_version: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    runs: Mapped[list[RunRow]] = relationship(back_populates="sweep", cascade="all, delete-orphan")


class RunRow(Base):
    __tablename__ = PREFIX + "runs"
    __table_args__ = (
        UniqueConstraint("sweep_id", "run_hash"),
        Index("ix_hbfp_runs_sweep_id_status", "sweep_id", "status"),  # what claims look for
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey(PREFIX + "sweeps.id", ondelete="CASCADE"))
    run_hash: Mapped[str] = mapped_column(String(32))
    config_id: Mapped[str] = mapped_column(String(32), index=True)
    label: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # baseline, grid or search
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    trial_number: Mapped[int | None] = mapped_column(Integer)  # set by ``hbfp-dse search``
    search_target: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str | None] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    faults: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # see runner.py
    resumed_from_epoch: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    final_acc: Mapped[float | None] = mapped_column(Float)
    best_acc: Mapped[float | None] = mapped_column(Float)
    final_val_acc: Mapped[float | None] = mapped_column(Float)  # None: no validation split
    density: Mapped[float | None] = mapped_column(Float)
    density_vs_bf16: Mapped[float | None] = mapped_column(Float)
    mac_share: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    schedule: Mapped[list[Any] | None] = mapped_column(JSON)  # resolved formats per epoch
    error: Mapped[str | None] = mapped_column(Text)
    sweep: Mapped[SweepRow] = relationship(back_populates="runs")
    epochs: Mapped[list[EpochRow]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="EpochRow.epoch"
    )


class EpochRow(Base):
    __tablename__ = PREFIX + "epochs"
    run_id: Mapped[int] = mapped_column(
        ForeignKey(PREFIX + "runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float] = mapped_column(Float)
    train_acc: Mapped[float] = mapped_column(Float)
    test_loss: Mapped[float] = mapped_column(Float)
    test_acc: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_acc: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    images_per_s: Mapped[float] = mapped_column(Float)
    formats: Mapped[dict[str, Any]] = mapped_column(JSON)
    run: Mapped[RunRow] = relationship(back_populates="epochs")


class OperandStatisticsRow(Base):
    """One quantized operand of one layer in one epoch (``emulation.statistics``)."""

    __tablename__ = PREFIX + "operand_statistics"
    run_id: Mapped[int] = mapped_column(
        ForeignKey(PREFIX + "runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer: Mapped[str] = mapped_column(String(300), primary_key=True)
    operand: Mapped[str] = mapped_column(String(16), primary_key=True)
    format: Mapped[str] = mapped_column(String(64))
    steps: Mapped[int] = mapped_column(Integer)
    sqnr_db: Mapped[float | None] = mapped_column(Float)
    rel_l2: Mapped[float] = mapped_column(Float)
    wasserstein: Mapped[float] = mapped_column(Float)
    flushed: Mapped[float] = mapped_column(Float)
    saturated: Mapped[float] = mapped_column(Float)
    exp_min: Mapped[int | None] = mapped_column(Integer)
    exp_max: Mapped[int | None] = mapped_column(Integer)


class AttemptRow(Base):
    """One attempt at a run and the environment it trained in."""

    __tablename__ = PREFIX + "attempts"
    run_id: Mapped[int] = mapped_column(
        ForeignKey(PREFIX + "runs.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker: Mapped[str] = mapped_column(String(300))
    start_epoch: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    host: Mapped[str] = mapped_column(String(255))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    python_version: Mapped[str] = mapped_column(String(32))
    torch_version: Mapped[str] = mapped_column(String(64))
    hbfp_version: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(32))
    cpu_threads: Mapped[int] = mapped_column(Integer)
    tf32: Mapped[bool] = mapped_column(Boolean)
    deterministic: Mapped[bool] = mapped_column(Boolean)
