"""What the report scripts of bench/sync.sh, bench/async.sh and bench/nats.sh share: reading
their META and TSV files, medians, number formatting, and the other-load check."""

import csv
import statistics


def read_meta(path):
    meta = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            meta[key] = value
    return meta


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def median(values):
    """The median of the values that are not None, or None if there are none."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec, suffix="", none="n/a"):
    return none if value is None else format(value, spec) + suffix


def pct(part, whole):
    return 100.0 * part / whole if whole else 0.0


def noise_why(r, noise_max):
    """Why a run is invalid if other processes used more than noise_max % of a core:
    r["noise_server"] and r["noise_load"] are the % of the server and the load core."""
    why = []
    if r["noise_server"] > noise_max:
        why.append(f"{r['noise_server']:.0f} % of the server core used by others")
    if r["noise_load"] > noise_max:
        why.append(f"{r['noise_load']:.0f} % of the load core used by others")
    return why


def ms(us):
    """µs -> a readable ms string"""
    v = us / 1000
    return f"{v:.2f}" if v < 10 else f"{v:,.0f}"
