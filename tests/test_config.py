import pytest

from reverie.config import (
    SIZES,
    TABLES,
    ConfigError,
    check_table_keys,
    config_fields,
    make_config,
)

REFERENCE_SIZES = {
    "1m": (512, 64, 4, 4, 64),
    "12m": (2048, 256, 16, 16, 256),
    "25m": (3072, 384, 24, 24, 384),
    "50m": (4096, 512, 32, 32, 512),
    "100m": (6144, 768, 48, 48, 768),
    "200m": (8192, 1024, 64, 64, 1024),
    "400m": (12288, 1536, 96, 96, 1536),
}


@pytest.mark.parametrize("name", list(REFERENCE_SIZES))
def test_size_presets_match_reference_table(name):
    cfg = make_config([], size=name)
    m = cfg.model
    assert (m.deter, m.hidden, m.classes, m.depth, m.units) == REFERENCE_SIZES[name]
    assert m.stoch == 32


def test_all_presets_listed():
    assert set(SIZES.keys()) == set(REFERENCE_SIZES)


def test_paper_defaults():
    cfg = make_config([])
    assert cfg.run.batch_size == 16 and cfg.run.batch_length == 64
    assert cfg.optim.lr == 4e-5 and cfg.optim.warmup == 1000 and cfg.optim.agc == 0.3
    assert cfg.behavior.horizon == 15 and cfg.behavior.lam == 0.95
    assert cfg.behavior.actor_entropy == 3e-4 and cfg.loss.free_nats == 1.0
    assert (cfg.loss.dyn, cfg.loss.rep) == (1.0, 0.1)
    assert cfg.model.unimix == 0.01 and cfg.model.bins == 255


def test_overrides_and_flags_apply():
    cfg = make_config(["run.batch_size=8", "optim.name=adam"], size="12m", seed=3)
    assert cfg.run.batch_size == 8 and cfg.optim.name == "adam"
    assert cfg.model.deter == 2048 and cfg.seed == 3


def test_unknown_key_names_closest():
    with pytest.raises(ConfigError) as e:
        make_config(["run.batch_sise=8"])
    assert "run.batch_sise" in str(e.value) and "run.batch_size" in str(e.value)
    with pytest.raises(ConfigError) as e:
        make_config(["model.dter=8"])
    assert "model.deter" in str(e.value)


def test_bad_value_type_is_rejected():
    with pytest.raises(ConfigError) as e:
        make_config(["run.batch_size=many"])
    assert "run.batch_size" in str(e.value)


def test_bad_choice_and_range_rejected():
    with pytest.raises(ConfigError, match="ablation.retnorm"):
        make_config(["ablation.retnorm=sometimes"])
    with pytest.raises(ConfigError, match="run.batch_length"):
        make_config(["run.batch_length=0"])
    with pytest.raises(ConfigError, match="unknown size"):
        make_config([], size="3m")
    with pytest.raises(ConfigError, match="key=value"):
        make_config(["run.batch_size"])


def test_every_validation_table_key_is_a_config_field():
    check_table_keys(TABLES)  # what importing reverie.config ran
    fields = config_fields()
    assert fields["seed"] is False and fields["env"] is True and fields["env.id"] is False
    assert fields["env.kwargs"] is False and fields["run.batch_size"] is False
    # the tables this checks are the ones validation reads
    assert set(TABLES) >= {"CHOICES", "POSITIVE", "RANGES", "OPEN_LOW", "BETAS", "LIMITS"}
    assert {"SWITCHES", "STRUCTURAL"} <= set(TABLES)


def test_a_table_key_with_a_typo_is_refused_naming_the_closest():
    with pytest.raises(ConfigError) as e:
        check_table_keys({"POSITIVE": ("model.deter", "run.batch_sise")})
    assert "POSITIVE" in str(e.value) and "'run.batch_sise'" in str(e.value)
    assert "run.batch_size" in str(e.value)
    with pytest.raises(ConfigError, match="'sed'.*closest: seed"):
        check_table_keys({"RANGES": {"sed": (0, 1, "")}})
    with pytest.raises(ConfigError, match="'model'"):  # a section where a value goes
        check_table_keys({"CHOICES": {"model": ("a", "b")}})
    check_table_keys({"STRUCTURAL": ("model", "env.id")})  # sections only there
    with pytest.raises(ConfigError, match="'modle'"):
        check_table_keys({"STRUCTURAL": ("modle",)})


def test_a_run_that_leaves_its_presets_protocol_is_told_so():
    from reverie.config import protocol_departures, protocol_note

    dmc = {"env.id": "dmc:walker_walk"}
    assert protocol_departures(make_config([], **dmc)) == {}
    assert protocol_note(make_config([], **dmc)) is None
    found = protocol_departures(make_config(["run.train_ratio=64", "env.action_repeat=2"], **dmc))
    assert found == {"run.train_ratio": (64.0, 1024.0), "env.action_repeat": (2, 1)}
    note = protocol_note(make_config(["run.train_ratio=64"], **dmc))
    assert note is not None and "run.train_ratio=64 (preset: 1024)" in note
    assert "dmc_proprio" in note and "not comparable" in note
    # the --train-ratio flag is a dotted key like any other
    assert protocol_departures(make_config([], **dmc, **{"run.train_ratio": 512.0}))
    gym = make_config([], **{"env.id": "gym:CartPole-v1"})
    assert protocol_note(gym) is None
