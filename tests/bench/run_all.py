"""Every benchmark in one run, one table: figure, value, baseline, ratio, target, pass/fail.

    .venv/bin/python tests/bench/run_all.py            # each script with its own defaults
    .venv/bin/python tests/bench/run_all.py --quick    # shorter runs (about 5 minutes on 2 cores)
    .venv/bin/python tests/bench/run_all.py --only worker,e2e --json figures.json

Runs every ``tests/bench/bench_*.py`` one after the other (never two at once: they would measure
each other), keeps each script's full output in ``--logs`` and reads its figures back:

- a script may print machine-readable lines, one per figure, which win over everything else::

      BENCH-JSON {"figure": "...", "value": 1.0, "baseline": 2.0, "ratio": 0.5, "target": ">= 0.5", "pass": true}

- otherwise the script's own table is read with the small parser registered below for it; a
  script without a parser (a new one) shows up with its exit status and the path of its log.

A script that fails, or whose table can no longer be read, is a FAIL row: the table never hides
a benchmark that did not run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# Shorter runs for --quick; each script's defaults otherwise.
QUICK: dict[str, list[str]] = {
    "middleware": ["--rounds", "3", "--seconds", "2"],
    "collector": ["--rounds", "2", "--seconds", "2"],
    "pipeline": ["--rounds", "3", "--events", "10000"],
    "worker": ["--events", "50000", "--rounds", "2", "--million", "200000"],
    "proxy": ["--rounds", "3", "--seconds", "2", "--gigabytes", "0.25"],
    "sandbox": ["--batches", "20", "--rounds", "2"],
    "e2e": ["--events", "2000", "--backlog", "20000"],
    "scale": ["--events", "20000", "--rounds", "1"],
}


@dataclass
class Figure:
    bench: str
    figure: str
    value: float | None
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None  # None: informational, no target


NUMBER = r"(-?[\d,]+(?:\.\d+)?)"


def num(text: str) -> float:
    return float(text.replace(",", ""))


def at_least(value: float | None, floor: float) -> bool | None:
    return None if value is None else value >= floor


def at_most(value: float | None, ceiling: float) -> bool | None:
    return None if value is None else value <= ceiling


def parse_middleware(out: str) -> list[Figure]:
    figures = []
    for kind, variant, rate, base, ratio in re.findall(
            rf"^(pass|landing)\s+(wrapped|basehttp|bare\+cookies)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out, re.M):
        floor = 0.95 if kind == "pass" else 0.9
        wrapped = variant == "wrapped"
        label = f"{'pass-through' if kind == 'pass' else 'landing (epik)'} req/s, {variant} vs bare app"
        figures.append(Figure("middleware", label, num(rate), num(base), num(ratio),
                              f">= {floor}" if wrapped else "(for scale)",
                              at_least(num(ratio), floor) if wrapped else None))
    return figures


def parse_collector(out: str) -> list[Figure]:
    figures = []
    single = re.search(rf"^single-event posts/s\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out, re.M)
    if single:
        value = num(single[1])
        figures.append(Figure("collector", "single-event posts/s (vs bare 202 endpoint)", value, num(single[2]),
                              num(single[3]), ">= 5,000", at_least(value, 5000)))
    batch = re.search(rf"^events/s in batches of (\d+)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out, re.M)
    if batch:
        value = num(batch[2])
        figures.append(Figure("collector", f"events/s in batches of {batch[1]} (vs bare)", value, num(batch[3]),
                              num(batch[4]), ">= 20,000", at_least(value, 20000)))
    script = re.search(rf"^browser script, gzipped bytes\s+{NUMBER}", out, re.M)
    if script:
        value = num(script[1])
        figures.append(Figure("collector", "browser script, gzipped bytes", value, target="<= 1,000",
                              passed=at_most(value, 1000)))
    return figures


def parse_pipeline(out: str) -> list[Figure]:
    figures = []
    for name, value, base, ratio in re.findall(
            rf"^(new visitors|returning visitors)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out, re.M):
        figures.append(Figure("pipeline", f"pipeline events/CPU-s, {name} (vs json.loads)", num(value), num(base),
                              num(ratio), ">= 20,000", at_least(num(value), 20000)))
    return figures


def parse_worker(out: str) -> list[Figure]:
    figures = []
    rate = re.search(rf"^worker events/s \(median[^)]*\)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out, re.M)
    if rate:
        value = num(rate[1])
        figures.append(Figure("worker", "worker events/s to a sink (vs raw HTTP posts)", value, num(rate[2]),
                              num(rate[3]), ">= 20,000", at_least(value, 20000)))
    rss = re.search(rf"worker RSS MB: launch / after 50k / after [\d,]+\s+{NUMBER} / {NUMBER} / {NUMBER}", out)
    if rss:
        growth = num(rss[3]) - num(rss[2])
        figures.append(Figure("worker", f"worker RSS MB after warm-up -> end (launch {rss[1]})", num(rss[3]),
                              num(rss[2]), None, "flat (< +20 MB)", at_most(growth, 20)))
    return figures


def parse_proxy(out: str) -> list[Figure]:
    # Rows of bench_proxy.py: "templated page (14452 B)   953   905   0.95  >= 0.5" (label, direct,
    # then proxied and ratio per client; the first client is the proxy as shipped). The hello world
    # row is for scale only and carries no target.
    figures = []
    for label, direct, proxied, ratio in re.findall(
            rf"^((?:templated page|JSON answer) \([\d,]+ B\))\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\b.*>= 0\.5",
            out, re.M):
        figures.append(Figure("proxy", f"req/s proxied vs direct: {label.strip()}", num(proxied), num(direct),
                              num(ratio), ">= 0.5", at_least(num(ratio), 0.5)))
    stream = re.search(rf"proxy RSS {NUMBER} MB before, peak {NUMBER} MB", out)
    if stream:
        figures.append(Figure("proxy", "proxy peak RSS MB streaming a large body", num(stream[2]), num(stream[1]),
                              None, "< 100 MB", num(stream[2]) < 100))
    return figures


def parse_sandbox(out: str) -> list[Figure]:
    sink = re.search(rf"^sink \(baseline\)\s+{NUMBER}", out, re.M)
    sandbox = re.search(rf"^pinsignal sandbox\s+{NUMBER}\s+{NUMBER}", out, re.M)
    if not (sink and sandbox):
        return []
    value = num(sandbox[1])
    return [Figure("sandbox", "sandbox events/s in batches of 1000 (vs bare sink)", value, num(sink[1]),
                   num(sandbox[2]), ">= 20,000", at_least(value, 20000))]


PARSERS: dict[str, Callable[[str], list[Figure]]] = {
    "middleware": parse_middleware, "collector": parse_collector, "pipeline": parse_pipeline,
    "worker": parse_worker, "proxy": parse_proxy, "sandbox": parse_sandbox,
}


def json_lines(bench: str, out: str) -> list[Figure]:
    figures = []
    for line in out.splitlines():
        if line.startswith("BENCH-JSON "):
            data = json.loads(line[len("BENCH-JSON "):])
            figures.append(Figure(bench, str(data["figure"]), data.get("value"), data.get("baseline"),
                                  data.get("ratio"), str(data.get("target", "")), data.get("pass")))
    return figures


def run_one(script: Path, quick: bool, logs: Path, timeout: float) -> tuple[list[Figure], float]:
    bench = script.stem.removeprefix("bench_")
    args = [sys.executable, str(script), *(QUICK.get(bench, []) if quick else [])]
    log = logs / f"{script.stem}.log"
    started = time.monotonic()
    print(f"running {' '.join(args[1:])} ...", file=sys.stderr, flush=True)
    try:
        result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        output, code = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = f"{exc.stdout or ''}{exc.stderr or ''}\n(timed out after {timeout:.0f} s)", -1
    elapsed = time.monotonic() - started
    log.write_text(output if isinstance(output, str) else output.decode(errors="replace"))
    figures = json_lines(bench, output) or (PARSERS[bench](output) if bench in PARSERS else [])
    if code != 0 or not figures:
        why = f"exit status {code}" if code != 0 else "no figures found in its output"
        figures.append(Figure(bench, f"{script.name} ran ({why}; see {log})", None, target="runs", passed=False))
    return figures, elapsed


def show(value: float | None, digits: int = 0) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}" if abs(value) >= 10 or digits == 0 and value == int(value) else f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    rows = [("bench", "figure", "value", "baseline", "ratio", "target", "result")]
    for fig in figures:
        verdict = "pass" if fig.passed else "FAIL" if fig.passed is False else "-"
        rows.append((fig.bench, fig.figure, show(fig.value), show(fig.baseline),
                     "" if fig.ratio is None else f"{fig.ratio:.2f}", fig.target, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("| " + " | ".join(cell.ljust(widths[i]) if i < 2 or i > 4 else cell.rjust(widths[i])
                                       for i, cell in enumerate(row)) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs of every benchmark")
    parser.add_argument("--only", help="comma-separated names (worker,e2e,...); default: every bench_*.py")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/pinsignal-bench"), help="where full outputs go")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one script may take")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        scripts = [script for script in scripts if script.stem.removeprefix("bench_") in wanted]
    figures: list[Figure] = []
    timings = []
    for script in scripts:
        found, elapsed = run_one(script, args.quick, args.logs, args.timeout)
        figures += found
        timings.append(f"{script.stem} {elapsed:.0f} s")
    print(table(figures))
    print(f"\n{len(scripts)} benchmarks ({', '.join(timings)}); full outputs in {args.logs}")
    if args.json:
        args.json.write_text(json.dumps([asdict(fig) for fig in figures], indent=2))
    return 1 if any(fig.passed is False for fig in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
