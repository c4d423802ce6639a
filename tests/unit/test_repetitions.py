"""Per-scenario minimum repetitions (quick profile: 6 where a 95 % interval is affordable)."""

from bench.config import RunConfig
from scenarios import base as scenario_base


def test_scenarios_may_ask_for_more_repetitions():
    config = RunConfig(platforms=("native",), scenarios=("cpu", "startup", "footprint"))
    assert [config.reps_for(s) for s in config.scenarios] == [3, 6, 3]
    assert config.max_reps_for("startup") == 6 and config.max_reps_for("cpu") == 3
    assert config.to_dict()["reps_per_scenario"] == {"cpu": 3, "startup": 6, "footprint": 3}
    assert config.reps_text().startswith("3 repetitions per cell (startup 6)")


def test_repetitions_on_the_command_line_win():
    config = RunConfig(platforms=("native",), scenarios=("startup",), repetitions=2)
    assert config.reps_for("startup") == 2 and config.max_reps_for("startup") == 4


def test_full_profile_keeps_its_default():
    config = RunConfig(platforms=("native",), scenarios=("startup",), profile="full")
    assert config.reps_for("startup") == 10


def test_declared_repetitions_reach_95_percent():
    """A scenario that asks for more repetitions than the profile's default asks for a 95 % interval; one that
    asks for fewer (to fit the quick budget) also caps its extension there, so the run's time is what it says."""
    from bench import stats
    from bench.config import DEFAULT_REPETITIONS

    for name in scenario_base.SCENARIOS:
        module = scenario_base.load(name)
        for profile, n in getattr(module, "REPETITIONS", {}).items():
            assert profile in scenario_base.PROFILES
            if n > DEFAULT_REPETITIONS[profile]:
                assert stats.median_interval([float(i) for i in range(n)]).reaches(), (name, n)
            else:
                assert getattr(module, "MAX_REPETITIONS", {}).get(profile) == n, (name, profile)


def test_fewer_repetitions_do_not_extend():
    config = RunConfig(platforms=("native",), scenarios=("isolation_limits", "isolation_noisy", "cpu"))
    assert [config.reps_for(s) for s in config.scenarios] == [2, 2, 3]
    assert [config.max_reps_for(s) for s in config.scenarios] == [2, 2, 3]
    # the command line still wins
    named = RunConfig(platforms=("native",), scenarios=("isolation_limits",), max_repetitions=5)
    assert named.max_reps_for("isolation_limits") == 5
