"""Text for next-token prediction and the small GPT: the corpus and its splits, batches,
training, every GEMM quantized, and the errors of a wrong pairing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from quantizations import step_quantizations

from hbfp_dse.errors import UserError
from hbfp_dse.training.assembly import model_for
from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.text import TextDataset, load_text
from hbfp_dse.training.trainer import load_config_data, train

pytestmark = pytest.mark.usefixtures("eager_quantizer")


def gpt(**changes: Any) -> TrainConfig:
    base = {
        "model": "gpt",
        "dataset": "pydoc-topics",
        "context_length": 32,
        "train_size": 64,
        "test_size": 16,
        "epochs": 2,
        "batch_size": 16,
        "device": "cpu",
        "optimizer": {"name": "adamw", "lr": 0.003},
    }
    return TrainConfig.model_validate(base | changes)


def test_the_standard_librarys_documentation_splits_by_position() -> None:
    from pydoc_data.topics import topics

    corpus = "\n\n".join(topics[key] for key in sorted(topics)).encode()
    data = load_text("pydoc-topics", None, context=64)
    assert len(corpus) > 400_000
    windows = data.train.windows
    assert windows.shape == ((int(len(corpus) * 0.9) - 1) // 64, 65)
    assert bytes(windows[0].tolist()) == corpus[:65]
    assert bytes(windows[1].tolist()) == corpus[64:129]  # inputs do not overlap
    first_test = int(len(corpus) * 0.9) + int(len(corpus) * 0.05)
    assert bytes(data.test.windows[0].tolist()) == corpus[first_test : first_test + 65]
    tokens, targets = next(iter(data.test_batches(4)))
    assert tokens.dtype == targets.dtype == torch.int64
    assert torch.equal(tokens[:, 1:], targets[:, :-1])  # each label is the next token


def test_any_text_file_trains_and_its_epochs_shuffle_reproducibly(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    whole = {"dataset": "text", "data_dir": str(file), "train_size": None, "test_size": None}
    data = load_config_data(gpt(**whole))
    assert isinstance(data, TextDataset)
    batches = data.train_batches(8, seed=1)
    batches.set_epoch(3)
    first = [t for t, _ in batches]
    batches.set_epoch(3)
    assert all(torch.equal(a, b) for a, b in zip(first, [t for t, _ in batches], strict=True))
    result = train(gpt(**whole))
    assert result.status == "done"
    assert result.epochs[-1].test_loss < result.epochs[0].train_loss  # it learns the phrase


def model_and_data(config: TrainConfig) -> None:
    model_for(config)
    load_config_data(config)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "text"}, "dataset 'text' needs data_dir"),
        ({"dataset": "text", "data_dir": "/nonexistent/x.txt"}, "cannot read data_dir"),
        ({"train_size": 10**6}, "train_size must be in 1.."),
        ({"model": "cnn"}, "model 'cnn' does not train on text"),
        ({"dataset": "cifar10", "context_length": None}, "model 'gpt' does not train on images"),
    ],
)
def test_what_goes_wrong_with_text_is_one_message(changes: dict[str, Any], message: str) -> None:
    config = gpt(**changes)
    with pytest.raises(UserError, match=message):
        model_and_data(config)


def test_context_length_belongs_to_text() -> None:
    with pytest.raises(ValidationError, match="context_length applies to the text datasets"):
        TrainConfig.model_validate({"dataset": "mnist-5k", "context_length": 32})
    assert gpt(context_length=64).context_length is None  # the default given is the default


def test_every_gemm_of_the_gpt_is_quantized_and_it_trains_emulated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = gpt(schedule="hbfp4")
    assert model_for(config).input_shape == (32,)
    calls = step_quantizations(config, monkeypatch)
    assert {fmt.name for fmt in calls} == {"hbfp4"}
    # 4 blocks of (4 projections, Q·Kᵀ, P·V, 2 MLP layers) and the head; 6 operands each (the
    # first attention's input is the embeddings': it needs its data gradient too).
    assert len(calls) == 6 * (4 * 8 + 1)
    result = train(config.model_copy(update={"schedule": config.schedule}))
    assert result.status == "done"
    assert 0.0 < result.epochs[-1].test_acc < 1.0  # next-token accuracy


def test_a_users_language_model_is_called_with_the_vocabulary_and_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "userlm.py").write_text(
        "from torch import nn\n"
        "def bigram(vocabulary, context_length):\n"
        "    return nn.Sequential(nn.Embedding(vocabulary, 16), nn.Linear(16, vocabulary))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    built = model_for(gpt(model="userlm:bigram"))
    assert [layer.kind for layer in built.layers] == ["Linear"]
    assert built.info.num_classes == 256
