"""Length buckets (``pad_to_buckets``): bounded batch shapes, padding that changes no loss, and a
compiled step that meets a bounded number of graphs; ``device.cuda_graphs`` is refused off CUDA."""

import dataclasses

import pytest
import torch
from torch._dynamo.utils import counters

from noamt import pipeline
from noamt.data import EncodedSplit, TokenBudgetBatches, collate
from noamt.data.batching import MAX_BUCKETS
from noamt.device import DeviceConfig, DeviceManager
from noamt.model import ModelConfig, Transformer

PAD, BOS, EOS = 0, 1, 2
VOCAB = 40
BUCKETS = [8, 16, 24]

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: one thread avoids oversubscribing a shared CPU


def split(n: int = 300, seed: int = 0) -> EncodedSplit:
    """Pairs of 1 to 22 tokens a side, the target length near the source's."""
    g = torch.Generator().manual_seed(seed)
    src_lens = torch.randint(1, 23, (n,), generator=g)
    tgt_lens = (src_lens + torch.randint(-3, 4, (n,), generator=g)).clamp(1, 22)
    return EncodedSplit(
        [torch.randint(3, VOCAB, (int(k),), generator=g).tolist() for k in src_lens],
        [torch.randint(3, VOCAB, (int(k),), generator=g).tolist() for k in tgt_lens],
    )


def batches(data: EncodedSplit, **kwargs) -> TokenBudgetBatches:
    return TokenBudgetBatches(data, pad_id=PAD, bos_id=BOS, eos_id=EOS, **kwargs)


def tiny_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(encoder_layers=1, decoder_layers=1, d_model=16, n_heads=2, d_ff=32, dropout=0.0, max_positions=32)
    return Transformer(cfg, VOCAB, VOCAB, PAD)


def test_collate_pads_source_and_target_to_the_bucket_of_the_longest():
    plain = collate([[5, 6, 7], [8]], [[9], [10, 11, 12, 13, 14, 15, 16, 17]], [0, 1], PAD, BOS, EOS)
    padded = collate(
        [[5, 6, 7], [8]], [[9], [10, 11, 12, 13, 14, 15, 16, 17]], [0, 1], PAD, BOS, EOS, pad_to_buckets=BUCKETS
    )
    for name in ("src", "tgt_in", "tgt_out"):
        a, b = getattr(plain, name), getattr(padded, name)
        assert b.size(1) == 16  # the longest row has 9 tokens (8 + EOS): bucket 16
        assert torch.equal(b[:, : a.size(1)], a) and bool((b[:, a.size(1) :] == PAD).all())
    assert padded.n_tgt_tokens == plain.n_tgt_tokens


def test_every_batch_has_a_bucket_width_and_an_epoch_at_most_two_shapes_per_bucket():
    data = split()
    it = batches(data, max_tokens=200, pad_to_buckets=BUCKETS)
    shapes, seen = set(), []
    for epoch in (1, 2):
        it.set_epoch(epoch)
        for batch in it:
            rows, width = batch.src.shape
            assert width in BUCKETS and batch.tgt_in.shape == batch.tgt_out.shape == (rows, width)
            assert rows * width <= 200
            assert int((batch.tgt_out != PAD).sum()) == batch.n_tgt_tokens
            shapes.add((rows, width))
            seen += batch.indices.tolist() if epoch == 1 else []
    assert sorted(seen) == list(range(len(data)))
    assert len(shapes) <= 2 * len(BUCKETS)
    full = {(200 // w, w) for w in BUCKETS}  # a bucket's batches but its last hold max_tokens // w pairs
    assert full <= shapes
    unbucketed = batches(data, max_tokens=200)
    assert len({tuple(b.src.shape) for b in unbucketed}) > 2 * len(BUCKETS)


def test_max_sentences_caps_the_rows_of_a_bucket():
    it = batches(split(), max_tokens=200, max_sentences=5, pad_to_buckets=BUCKETS)
    shapes = {tuple(b.src.shape) for b in it}
    assert all(rows <= 5 for rows, _ in shapes) and len(shapes) <= 2 * len(BUCKETS)


@pytest.mark.parametrize(
    "buckets",
    [[], [0, 8], [8, 8], [16, 8], "8,16", [8.0, 16], [True], list(range(1, MAX_BUCKETS + 2))],
    ids=["empty", "zero", "repeated", "decreasing", "text", "float", "bool", "too-many"],
)
def test_bucket_lists_out_of_their_meaning_are_refused_in_one_line(buckets):
    with pytest.raises(ValueError, match=r"pad_to_buckets=.*: must be null or a list of 1 to 64 increasing"):
        batches(split(20), max_tokens=200, pad_to_buckets=buckets)


def test_a_pair_longer_than_the_largest_bucket_is_refused():
    with pytest.raises(
        ValueError, match="pad_to_buckets: a sequence of 23 tokens .* longer than the largest bucket, 16"
    ):
        batches(split(), max_tokens=200, pad_to_buckets=[8, 16])


def test_buckets_replace_the_multiple():
    with pytest.raises(ValueError, match="pad_to_buckets replaces pad_to_multiple"):
        batches(split(20), max_tokens=200, pad_to_buckets=BUCKETS, pad_to_multiple=8)


def test_padded_batches_give_the_losses_and_gradients_of_unpadded_ones():
    """Source padding is masked out of attention, target padding is causal-masked and ignored by
    the loss: a bucket-padded batch gives the unpadded batch's sums to float32 rounding."""
    model, data, widened = tiny_model(), split(60), 0
    for batch in batches(data, max_tokens=200, pad_to_buckets=BUCKETS):
        idx = batch.indices.tolist()
        plain = collate([data.src_ids[i] for i in idx], [data.tgt_ids[i] for i in idx], idx, PAD, BOS, EOS)
        widened += batch.src.numel() + batch.tgt_in.numel() - plain.src.numel() - plain.tgt_in.numel()
        sums, grads = [], []
        for b in (plain, batch):
            model.zero_grad()
            losses = model(b.src, b.tgt_in, b.tgt_out, label_smoothing=0.1)
            losses.loss.backward()
            sums.append(torch.stack([losses.loss.detach(), losses.nll, losses.tokens.float()]))
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        torch.testing.assert_close(sums[1], sums[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)
    assert widened > 0


@pytest.mark.slow
def test_the_compiled_step_gives_the_eager_losses_with_a_bounded_number_of_compilations():
    """torch.compile (device.compile) over an epoch of bucketed batches: the eager losses and
    gradients, and no more compiled frames after the first batch than there are buckets."""
    model = tiny_model()
    compiled = DeviceManager(DeviceConfig(device="cpu", compile=True)).wrap(model)
    it = batches(split(120), max_tokens=160, pad_to_buckets=BUCKETS)
    torch._dynamo.reset()
    counters.clear()
    frames, shapes = [], set()
    for batch in it:
        shapes.add(tuple(batch.src.shape))
        results = []
        for step in (compiled, model):
            model.zero_grad()
            losses = step(batch.src, batch.tgt_in, batch.tgt_out, label_smoothing=0.1)
            losses.loss.backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters()])
            results.append((losses.loss.detach(), grads))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-5)
        frames.append(counters["frames"]["ok"])
    assert len({width for _, width in shapes}) == len(BUCKETS)
    assert frames[-1] - frames[0] <= len(BUCKETS)


def test_cuda_graphs_are_refused_off_cuda_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("checks the refusal on a machine without CUDA")
    with pytest.raises(
        RuntimeError, match=r"^device.cuda_graphs=true needs a CUDA device, not cpu \(set it to false\)$"
    ):
        DeviceManager(DeviceConfig(device="cpu", cuda_graphs=True))
    with pytest.raises(ValueError, match="device.cuda_graphs='yes': must be true or false"):
        DeviceConfig(cuda_graphs="yes")


def test_trainer_pad_to_buckets_reaches_the_training_batches_and_is_checked_where_declared(small_run, tmp_path):
    cfg = small_run(max_steps=2, val_interval=0, save_interval=0, validate_at_start=False)
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, pad_to_buckets=[16, 32, 64, 128]))
    data = pipeline.prepare_data(cfg.data, cfg.tokenizer, cfg.trainer, DeviceManager(DeviceConfig("cpu")))
    widths = {batch.src.shape[1] for batch in data.train} | {batch.tgt_in.shape[1] for batch in data.valid}
    assert widths <= {16, 32, 64, 128}
    with pytest.raises(
        ValueError, match=r"^trainer.pad_to_buckets=\[16, 32\]: must be null while trainer.pad_to_multiple"
    ):
        dataclasses.replace(cfg.trainer, pad_to_buckets=[16, 32], pad_to_multiple=8)
