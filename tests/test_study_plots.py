"""noamt_study.plots (scripts/plot_schedules.py): schedule specs, the shared peak, the figures."""

import pytest

from noamt_study import plots

REL = 1e-12


@pytest.fixture(scope="module")
def plot_script():
    return plots


def test_parse_spec(plot_script):
    assert plot_script.parse_spec("noam") == ("noam", {})
    assert plot_script.parse_spec("cosine:peak_lr=7e-4,warmup_steps=4000,total_steps=1e5") == (
        "cosine",
        {"peak_lr": 7e-4, "warmup_steps": 4000, "total_steps": 100000},
    )
    assert plot_script.parse_spec("wsd:decay_shape=1-sqrt,decay_fraction=0.1") == (
        "wsd",
        {"decay_shape": "1-sqrt", "decay_fraction": 0.1},
    )
    with pytest.raises(ValueError, match="key=value"):
        plot_script.parse_spec("cosine:peak_lr")
    with pytest.raises(ValueError, match="unknown schedule 'foo'"):
        plot_script.parse_spec("foo:a=1")


def test_plot_params_default_to_the_noam_peak_and_the_steps(plot_script):
    params = plot_script.schedule_params("cosine", {}, d_model=512, warmup_steps=4000, steps=100000)
    assert params["peak_lr"] == pytest.approx((512 * 4000) ** -0.5, rel=REL)
    assert params["total_steps"] == 100000
    assert plot_script.parse_spec("cosine:total_steps=5e4") == ("cosine", {"total_steps": 50000})
    params = plot_script.schedule_params("cosine", {"peak_lr": 1e-3}, d_model=512, warmup_steps=4000, steps=100000)
    assert params["peak_lr"] == 1e-3


@pytest.mark.parametrize(
    "specs",
    [
        [],
        [
            "noam:factor=2",
            "inverse_sqrt:warmup_init_lr=1e-7",
            "wsd:decay_shape=cosine,decay_fraction=0.3",
            "linear:peak_lr=1e-3,total_steps=2500,warmup_steps=0",
            "--log",
        ],
    ],
)
def test_plot_writes_png_and_svg(plot_script, tmp_path, specs):
    out = tmp_path / "sub" / "curves"
    argv = [
        *specs,
        "--steps",
        "3000",
        "--warmup-steps",
        "300",
        "--d-model",
        "256",
        "--out",
        str(out),
    ]
    assert plot_script.main(argv) == 0
    for suffix in (".png", ".svg"):
        path = out.with_suffix(suffix)
        assert path.is_file() and path.stat().st_size > 0


def test_plot_rejects_bad_spec(plot_script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        plot_script.main(["cosine:total_steps=10", "--out", str(tmp_path / "x")])
    assert "schedule.total_steps=10: must be an integer > schedule.warmup_steps=4000" in capsys.readouterr().err
