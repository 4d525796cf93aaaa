"""tuning.json: the peaks --tune chose, kept and read back, and refused when they are not this
command's choice or not a choice at all."""

import json
import re

import pytest

from noamt_study.collect import CompareError
from noamt_study.tuning_choice import CHOICE_FILE, TuningChoice, read_choice, write_choice


def choice(**changes) -> TuningChoice:
    fields = {
        "criterion": "bleu",
        "tune_seeds": [1],
        "lr_scales": [0.5, 1.0, 2.0],
        "grids": {"noam": [0.5, 1.0, 2.0], "wsd": [0.5, 1.0, 2.0, 4.0]},
        "chosen": {"noam": 1.0, "wsd": 2.0},
        "validation": {"noam-x0.5": 28.1, "noam-x1": 30.7, "noam-x2": 30.2, "wsd-x2": 33.3},
    }
    return TuningChoice(**{**fields, **changes})


def test_a_choice_is_read_back_as_written(tmp_path):
    assert read_choice(tmp_path, "bleu", [1], [0.5, 1, 2]) is None  # nothing chosen yet
    write_choice(tmp_path, choice())
    assert read_choice(tmp_path, "bleu", [1], [2, 1, 0.5]) == choice()  # the grid in any order


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        (("loss", [1], [0.5, 1, 2]), "chosen with criterion bleu, this command asks for loss"),
        (("bleu", [1, 2], [0.5, 1, 2]), "chosen with tune_seeds [1], this command asks for [1, 2]"),
        (("bleu", [1], [1, 2, 4]), "chosen with lr_scales [0.5, 1.0, 2.0], this command asks for [1, 2, 4]"),
    ],
)
def test_a_choice_made_another_way_is_refused_not_reused(tmp_path, asked, message):
    write_choice(tmp_path, choice())
    with pytest.raises(CompareError, match=re.escape(f"{CHOICE_FILE}: the peaks were {message};")):
        read_choice(tmp_path, *asked)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "not a tuning choice"),
        ('{"criterion": "bleu"}', "not a tuning choice .KeyError"),
        (json.dumps({**choice().__dict__, "chosen": {"noam": 8.0}}), "chosen noam x8 is not in its grid"),
        (json.dumps({**choice().__dict__, "criterion": "chrf"}), "criterion 'chrf' is not one of bleu, loss"),
        (json.dumps({**choice().__dict__, "validation": {"noam-x1": "NaN"}}), "holds a number that is not finite"),
    ],
)
def test_a_file_that_is_not_a_choice_is_refused_in_one_line(tmp_path, content, message):
    (tmp_path / CHOICE_FILE).write_text(content)
    with pytest.raises(CompareError, match=message) as err:
        read_choice(tmp_path, "bleu", [1], [0.5, 1, 2])
    assert "\n" not in str(err.value)


def test_a_schedule_added_later_joins_the_choice_and_the_earlier_ones_stay():
    later = choice(
        grids={"noam": [0.5, 1.0, 2.0, 4.0], "cosine": [0.5, 1.0, 2.0]},
        chosen={"noam": 4.0, "cosine": 1.0},
        validation={"noam-x1": 29.0, "cosine-x1": 31.0},
    )
    merged = choice().merged(later)
    assert merged.chosen == {"noam": 1.0, "wsd": 2.0, "cosine": 1.0}
    assert merged.grids["noam"] == [0.5, 1.0, 2.0] and merged.grids["cosine"] == [0.5, 1.0, 2.0]
    assert merged.validation["noam-x1"] == 30.7 and merged.validation["cosine-x1"] == 31.0
