"""Systems of chips: which chips, joined how. YAML presets and files, validated like chips.

```yaml
name: h200x4
chip: h200                 # a chip preset or YAML for every chip (or `chips: [...]`)
topology: {kind: switch, dims: [4]}
link: {bandwidth: 450 GB/s, latency: 0.7 us, pj_per_byte: 10}
collective: ring           # ring | bidir-ring | direct | halving-doubling | hierarchical
```
"""

from __future__ import annotations

from pathlib import Path

from hardware.chip import ChipConfig
from hardware.chips import ConfigError, load_chip
from hardware.loader import from_dict, resolve
from hardware.system import COLLECTIVES, HostConfig, LinkConfig, ScaleOut, SystemConfig
from hardware.topology import KINDS, Topology
from hardware.yamlfile import read_yaml

SYSTEMS = Path(__file__).parent / "presets" / "systems"
FIELDS = ("name", "chip", "chips", "topology", "link", "collective", "scale_out", "host")
MAX_CHIPS = 1 << 16


def list_systems() -> list[str]:
    return sorted(p.stem for p in SYSTEMS.glob("*.yaml"))


def load_system(name_or_path: str | Path) -> SystemConfig:
    """A preset by name (``h100x4``) or a system YAML file."""
    from hardware.chips import list_presets

    hint = {name: f"'{name}' is a chip preset, not a system: use --chip {name}"
            for name in list_presets()}
    path = resolve(name_or_path, SYSTEMS, "system", ConfigError, other=hint)
    data = read_yaml(path, ConfigError)
    return system_from_dict(data, path.name, path.parent)


def system_from_dict(data: object, source: str, base: Path = Path(".")) -> SystemConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of system fields")
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown field (expected one of: "
                          f"{', '.join(FIELDS)})")
    topo = _topology(data.get("topology"), source)
    chips = _chips(data, topo.chips, source, base)
    link = _link(data.get("link"), source)
    algo = data.get("collective", "ring")
    if algo not in COLLECTIVES:
        raise ConfigError(f"{source}: collective: expected one of "
                          f"{', '.join(COLLECTIVES)}, got {algo!r}")
    scale_out = _scale_out(data.get("scale_out"), topo, source)
    host = HostConfig()
    if data.get("host") is not None:
        if not isinstance(data["host"], dict):
            raise ConfigError(f"{source}: host: expected {{memory: ..., bandwidth: ..., ...}}")
        host = from_dict(HostConfig, data["host"], source, ConfigError, "host")
    return SystemConfig(str(data.get("name", source)), chips, topo, link, algo, scale_out,
                        host)


def _scale_out(data: object, topo: Topology, source: str) -> ScaleOut | None:
    """A cluster's NICs: ``{link: {bandwidth, latency, ...}, oversubscription: 2}``."""
    if data is None:
        if topo.kind == "cluster":
            raise ConfigError(f"{source}: scale_out: a cluster topology needs its NIC link "
                              f"({{link: {{bandwidth: ..., latency: ...}}}})")
        return None
    if topo.kind != "cluster":
        raise ConfigError(f"{source}: scale_out: only a cluster topology has a scale-out "
                          f"fabric (topology kind is {topo.kind})")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: scale_out: expected {{link: ..., oversubscription: ...}}")
    _known(data, ("link", "oversubscription"), f"{source}: scale_out")
    link = from_dict(LinkConfig, data.get("link"), source, ConfigError, "scale_out.link") \
        if isinstance(data.get("link"), dict) else None
    if link is None:
        raise ConfigError(f"{source}: scale_out.link: expected {{bandwidth: ..., latency: ...}}")
    over = data.get("oversubscription", 1.0)
    if not isinstance(over, (int, float)) or isinstance(over, bool) or over <= 0:
        raise ConfigError(f"{source}: scale_out.oversubscription: expected a positive number, "
                          f"got {over!r}")
    return ScaleOut(link, float(over))


def _topology(t: object, source: str) -> Topology:
    if not isinstance(t, dict) or "kind" not in t or "dims" not in t:
        raise ConfigError(f"{source}: topology: expected {{kind: ..., dims: [...]}}")
    _known(t, ("kind", "dims"), f"{source}: topology")
    dims = t["dims"]
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                             for d in dims):
        raise ConfigError(f"{source}: topology.dims: expected a list of integers")
    try:
        topo = Topology(str(t["kind"]), tuple(dims))
    except ValueError as exc:
        raise ConfigError(f"{source}: topology: {exc} (kinds: {', '.join(KINDS)})") from None
    if topo.chips > MAX_CHIPS:
        raise ConfigError(f"{source}: topology.dims: {topo.chips} chips, more than "
                          f"{MAX_CHIPS:,}")
    return topo


def _known(data: dict, fields: tuple[str, ...], where: str) -> None:
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown field (expected one of: "
                          f"{', '.join(fields)})")


def _chips(data: dict, n: int, source: str, base: Path) -> tuple[ChipConfig, ...]:
    names = data.get("chips") or ([data["chip"]] * n if "chip" in data else None)
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{source}: chip: name a chip preset or file for every chip")
    if len(names) != n:
        raise ConfigError(f"{source}: chips: {len(names)} given, the topology has {n}")
    out, cache = [], {}
    for name in names:
        key = str(name)
        if key not in cache:
            ref = key if "/" not in key and not key.endswith((".yaml", ".yml")) else base / key
            try:
                cache[key] = load_chip(ref)
            except ConfigError as exc:
                field = "chips" if "chips" in data else "chip"
                raise ConfigError(f"{source}: {field}: {exc}") from None
        out.append(cache[key])
    return tuple(out)


def _link(link: object, source: str) -> LinkConfig:
    if not isinstance(link, dict):
        raise ConfigError(f"{source}: link: expected {{bandwidth: ..., latency: ...}}")
    return from_dict(LinkConfig, link, source, ConfigError, "link")
