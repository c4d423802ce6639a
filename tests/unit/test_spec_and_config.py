"""InstanceSpec validation and run selection: bad input is one clear error."""

import pytest

from bench.config import RunConfig, parse_selection
from runtime.errors import SpecError
from runtime.spec import InstanceSpec, parse_cpuset, parse_rate, parse_size


def test_sizes_and_rates():
    assert parse_size("64M") == 64 * 2**20
    assert parse_size("1g") == 2**30
    assert parse_size("512") == 512
    assert parse_rate("100mbit") == 100_000_000
    assert parse_rate("1gbit") == 10**9
    assert parse_cpuset("0-2,5") == [0, 1, 2, 5]


@pytest.mark.parametrize("text", ["-5", "0", "lots", "5X"])
def test_invalid_sizes(text):
    with pytest.raises(SpecError, match="memory"):
        parse_size(text, "memory")


def test_invalid_spec_values():
    with pytest.raises(SpecError, match="unknown network mode 'wifi'"):
        InstanceSpec(network="wifi")
    with pytest.raises(SpecError, match="memory"):
        InstanceSpec(memory=0)
    with pytest.raises(SpecError, match="cpus"):
        InstanceSpec(cpus=-1)
    with pytest.raises(SpecError, match="cpuset"):
        InstanceSpec(cpuset="3-1")


def test_limits_lists_only_what_is_set():
    assert InstanceSpec(memory=10, pids_max=5).limits() == {"memory": 10, "pids_max": 5}


def test_selection_defaults_and_errors():
    config = parse_selection(None, None, "quick", None)
    assert config.platforms == ("native", "container", "container-userns", "vm")
    assert config.reps == 3
    assert ("native", "cpu") in config.cells()
    with pytest.raises(SpecError, match="unknown platform hyperv"):
        parse_selection("native,hyperv", None, "quick", None)
    with pytest.raises(SpecError, match="unknown scenario gpu"):
        parse_selection(None, "gpu", "quick", None)
    with pytest.raises(SpecError, match="repetitions"):
        parse_selection(None, None, "quick", 0)
    with pytest.raises(SpecError, match="accelerator"):
        parse_selection(None, None, "quick", None, accel="hvf")


def test_config_round_trip():
    config = RunConfig(platforms=("native",), scenarios=("cpu",), profile="full", repetitions=4)
    assert RunConfig.from_dict(config.to_dict()) == config
