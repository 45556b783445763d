"""Keras's `{"class_name": ..., "config": {...}}` layout, shared by the modules
that turn names and configs into objects (initializers, regularizers, losses,
metrics, optimizers, schedules, layers).

Each module keeps its own table of names and its own error messages; what is
here is the mechanism: the base class methods, `serialize`, and the steps of
`deserialize`.
"""


class Configurable:
    """`get_config()` (no arguments here), `from_config(config)` (the constructor
    called with it) and a repr that shows the config."""

    _repr_hidden = ()             # config keys the repr leaves out

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k not in self._repr_hidden)
        return f"{type(self).__name__}({args})"


def by_class_name(classes):
    """{cls.__name__: cls} of `classes`."""
    return {cls.__name__: cls for cls in classes}


def serialize(obj, base, message):
    """`{"class_name": ..., "config": obj.get_config()}`; a TypeError unless `obj` is
    a `base`, with `message` formatted with `obj` and `type` (its type's name)."""
    if not isinstance(obj, base):
        raise TypeError(message.format(obj=obj, type=type(obj).__name__))
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def class_and_config(config, who="config", error=TypeError):
    """(class_name, config) of a dict with a "class_name" key ("config" missing or
    None is {}); `error` naming `who` for anything else."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise error(f"{who}: expected a dict with 'class_name' and 'config', got {config!r}")
    cfg = config.get("config") or {}
    if not isinstance(cfg, dict):
        raise error(f"{who}: expected 'config' to be a dict, got {type(cfg).__name__} {cfg!r}")
    return config["class_name"], cfg


def build(cls, class_name, config, **extra):
    """`cls.from_config(dict(config), **extra)`; a TypeError (an unknown or missing
    argument) becomes a ValueError naming `class_name` and the config."""
    try:
        return cls.from_config(dict(config), **extra)
    except TypeError as e:
        raise ValueError(f"deserialize: bad config for {class_name}: {config!r} ({e})") from None


def deserialize(config, factory, cls=None):
    """An object from a name (`factory(name)()`) or a `{"class_name", "config"}` dict
    (`cls(class_name)`, or `factory(class_name)`, built from the config), as
    initializers and regularizers take them."""
    if isinstance(config, str):
        return factory(config)()
    if not isinstance(config, dict):
        raise TypeError(f"deserialize: expected a str or a dict, got {type(config).__name__}")
    if "class_name" not in config:
        raise ValueError(f"deserialize: the dict needs a 'class_name' key, got keys {sorted(config)}")
    name = config["class_name"]
    return build((cls or factory)(name), name, config.get("config") or {})


def deserialize_checked(config, classes, kind, custom_objects=None):
    """The object a `{"class_name": str, "config": dict}` dict describes, looked up by
    class name among `classes` and `custom_objects` (those first), as losses and
    metrics take them; `kind` names the objects in the errors."""
    if not isinstance(config, dict):
        raise TypeError(f"config: expected a dict with 'class_name' and 'config', got {type(config).__name__}")
    if not isinstance(config.get("class_name"), str) or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"config: expected a dict with a str 'class_name' and a dict 'config', got {config!r}")
    name = config["class_name"]
    known = {**by_class_name(classes), **(custom_objects or {})}
    cls = known.get(name)
    if cls is None:
        raise ValueError(f"config: unknown {kind} class {name!r}; known: {', '.join(sorted(known))}")
    return cls.from_config(dict(config.get("config", {})))
