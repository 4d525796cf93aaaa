"""The model card of a release (its ``README.md``): the data, the model, the training recipe and,
when the exported checkpoint was evaluated, its scores, all read from the run's resolved config
and its ``results.json``."""

from __future__ import annotations

from noamt import __version__
from noamt.results import EvaluationResults

RECIPE_TRAINER_KEYS = ("max_steps", "max_tokens", "update_freq", "clip_norm", "label_smoothing", "seed", "best_metric")


def _settings(section: dict | None, keys: tuple[str, ...] | None = None) -> str:
    """``key=value`` pairs of a config section, in its order (or the order of ``keys``)."""
    if not section:
        return "(not recorded)"
    keys = keys or tuple(section)
    return ", ".join(f"`{key}={section[key]}`" for key in keys if key in section)


def _scores(results: EvaluationResults | None) -> list[str]:
    if results is None:
        return ["No evaluation of this checkpoint was found (`noamt-evaluate` writes the run's `eval/results.json`)."]
    decoding = ", ".join(f"{key}={value}" for key, value in results["decoding"].items())
    lines = [
        f"sacreBLEU scores of this checkpoint (update {results['step']}), decoding {decoding}:",
        "",
        "| split | sentences | BLEU | chrF | TER |",
        "|---|---:|---:|---:|---:|",
    ]
    for split, scores in results["splits"].items():
        lines.append(
            f"| {split} | {scores['n_sentences']} | {scores['bleu']:.2f} | {scores['chrf']:.2f} | {scores['ter']:.2f} |"
        )
    signatures = next((scores.get("signatures", {}) for scores in results["splits"].values()), {})
    lines += ["", *(f"- {metric}: `{signature}`" for metric, signature in signatures.items())]
    return lines


def model_card(run_config: dict, vocab_size: int, step: int | None, results: EvaluationResults | None) -> str:
    """Markdown describing the run behind a release; ``results`` are the scores of the exported
    checkpoint, or None when it was not evaluated."""
    data = run_config.get("data") or {}
    src, tgt = data.get("src_lang", "?"), data.get("tgt_lang", "?")
    train_examples = data.get("max_train_examples") or "all"
    lines = [
        f"# {data.get('name', 'noamt')}: {src} → {tgt} Transformer",
        "",
        f"An encoder-decoder Transformer trained with noamt {__version__}, exported at update {step}.",
        "",
        "## Data",
        "",
        f"- corpus: `{data.get('name')}` (read from {data.get('source')}), {src} → {tgt}, "
        f"training pairs: {train_examples}",
        f"- tokenizer: joint BPE with byte fallback, {vocab_size} tokens (`tokenizer.json`)",
        "",
        "## Model and training recipe",
        "",
        f"- model: {_settings(run_config.get('model'))}",
        f"- optimizer: {_settings(run_config.get('optim'))}",
        f"- schedule: {_settings(run_config.get('schedule'))}",
        f"- trainer: {_settings(run_config.get('trainer'), RECIPE_TRAINER_KEYS)}",
        "",
        "## Scores",
        "",
        *_scores(results),
        "",
        "## Use",
        "",
        "```",
        "noamt-translate checkpoint=<this folder> input=source.txt output=translation.txt",
        "```",
        "",
    ]
    return "\n".join(lines)
