"""Match quality of exclusion screening on the real OIG LEIE rows: precision and recall per threshold.

Usage: python -m benchmarks.match_quality [--seed 20261202] [--sample 1500] [--write]

A labelled sample, deterministic for a seed: the real LEIE exclusion rows in data/public are split in two
halves. The first half is the list screened against. Positives are rows of that half, perturbed the ways a
provider's record differs from the list (a typo, word order, a legal-form suffix, initials); each must find
the row it came from. Negatives are real names from the other half, in their own state: anything they raise is
a false alarm (a namesake on the list included: without a date of birth screening cannot tell them apart).
The same candidate search and scores as screening (`screening.candidates`, `screening.name_scores`), with
the candidate cut-off lowered so that every threshold can be judged from one pass. `--write` stores the
figures in benchmarks/results/match_quality.json.
"""
from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from backoffice.checks import exclusion_lists, names
from backoffice.models import ExclusionRecordKind
from backoffice.services import screening

ROOT = Path(__file__).resolve().parent.parent
LEIE = ROOT / "data" / "public" / "oig_leie_monthly_exclusions_2016-01_to_2023-06.csv"
RESULT = ROOT / "benchmarks" / "results" / "match_quality.json"
SEED = 20261202
SAMPLE = 1500
TOKEN_SET_GRID = (0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.95, 1.0)
JARO_WINKLER_GRID = (0.0, 0.80, 0.85, 0.88, 0.90, 0.93, 0.95)
# Far below any sensible threshold, so that one candidate pass serves every row of the grid.
CUTOFF = 0.7
BUSINESS_SUFFIXES = (" LLC", " INC", ", INC.", " L.L.C.", " CORP", ", P.C.")


def typo(word: str, rng: random.Random) -> str:
    """One slip of the keyboard in a word of four letters or more: two letters swapped, one dropped or doubled."""
    if len(word) < 4:
        return word
    at = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap":
        return word[:at] + word[at + 1] + word[at] + word[at + 2:]
    if kind == "drop":
        return word[:at] + word[at + 1:]
    return word[:at] + word[at] + word[at:]


def perturb(row: exclusion_lists.ExclusionRow, rng: random.Random) -> tuple[str, str]:
    """(how, the name a provider's record might give) for a real list row."""
    if row.business_name:
        how = rng.choice(("typo", "word order", "suffix", "suffix and typo"))
        words = row.business_name.split()
        if how in ("typo", "suffix and typo"):
            longest = max(range(len(words)), key=lambda n: (len(words[n]), -n))
            words[longest] = typo(words[longest], rng)
        if how == "word order" and len(words) > 1:
            words = words[1:] + words[:1]
        name = " ".join(words)
        return how, name + (rng.choice(BUSINESS_SUFFIXES) if how.startswith("suffix") else "")
    first, last = row.first_name or "", row.last_name or ""
    how = rng.choice(("typo", "word order", "initials", "suffix"))
    if how == "typo":
        return how, f"{first} {typo(last, rng)}"
    if how == "word order":
        return how, f"{last} {first}"
    if how == "initials":
        return how, f"{first[:1]}. {last}"
    return how, f"{first} {last}, {rng.choice(('MD', 'Jr', 'RN', 'PhD'))}"


def party(row: exclusion_lists.ExclusionRow, name: str) -> screening.Party:
    if row.business_name:
        return screening.Party("organisation", name, names.business_key(name), None)
    return screening.Party("principal", name, names.person_key_from_full_name(name), None)


def labelled_sample(seed: int, sample: int) -> tuple[list[screening.ListRow], list[dict]]:
    """The list half as index rows, and the sample: each case a subject, its label and the row it must find."""
    rows = [r for r in exclusion_lists.read(LEIE, expect={"oig_leie"}).rows
            if r.kind == ExclusionRecordKind.EXCLUSION and r.state]
    rng = random.Random(seed)
    rng.shuffle(rows)
    listed, others = rows[:len(rows) // 2], rows[len(rows) // 2:]
    index_rows = [screening.ListRow(n + 1, r.identity, r.row_key, r.kind, "oig_leie", r.name_key, None, r.state,
                                    r.excluded_on, None) for n, r in enumerate(listed)]
    cases = []
    for n in rng.sample(range(len(listed)), sample):
        how, name = perturb(listed[n], rng)
        cases.append({"how": how, "name": name, "party": party(listed[n], name), "state": listed[n].state,
                      "expected": n + 1})
    for row in rng.sample(others, sample):
        name = row.business_name or f"{row.first_name} {row.last_name}"
        cases.append({"how": "negative", "name": name, "party": party(row, name), "state": row.state,
                      "expected": None})
    return index_rows, cases


def evaluate(seed: int = SEED, sample: int = SAMPLE) -> dict:
    index_rows, cases = labelled_sample(seed, sample)
    index = screening.ListIndex(index_rows)
    by_id = {row.id: row for row in index_rows}
    subjects = [screening.Subject([c["party"]], {c["state"]}, set()) for c in cases]
    found = screening.candidates(index, subjects, screening.Thresholds(), cutoff=CUTOFF)
    scored = [[(row_id, screening.name_scores(c["party"].name_key, by_id[row_id].name_key))
               for (_, row_id) in sorted(pairs)] for c, pairs in zip(cases, found, strict=True)]
    defaults = screening.Thresholds()

    def measure(token_set: float, jaro_winkler: float, exact: bool = False) -> dict:
        true_pos = false_pos = 0
        missed: Counter = Counter()
        for case, pairs in zip(cases, scored, strict=True):
            raised = {row_id for row_id, (ts, jw) in pairs
                      if (by_id[row_id].name_key == case["party"].name_key if exact else ts >= token_set and jw >= jaro_winkler)}
            hit = case["expected"] in raised
            true_pos += hit
            false_pos += len(raised) - hit
            if case["expected"] and not hit:
                missed[case["how"]] += 1
        positives = sum(1 for c in cases if c["expected"])
        return {"token_set": token_set, "jaro_winkler": jaro_winkler, "raised": true_pos + false_pos,
                "true_matches": true_pos, "false_alarms": false_pos,
                "precision": round(true_pos / (true_pos + false_pos), 3) if true_pos + false_pos else None,
                "recall": round(true_pos / positives, 3), "missed_by_perturbation": dict(sorted(missed.items()))}

    namesakes = sum(1 for c, pairs in zip(cases, scored, strict=True) if not c["expected"]
                    and any(by_id[row_id].name_key == c["party"].name_key for row_id, _ in pairs))
    return {
        "benchmark": "match_quality", "source": LEIE.name, "seed": seed, "sample": sample,
        "list_rows": len(index_rows), "positives": sample, "negatives": sample,
        "perturbations": dict(sorted(Counter(c["how"] for c in cases if c["expected"]).items())),
        "negatives_with_an_exact_namesake_on_the_list": namesakes,
        "exact_only": measure(1.0, 1.0, exact=True),
        "by_token_set": [measure(t, defaults.name_jaro_winkler) for t in TOKEN_SET_GRID],
        "by_jaro_winkler": [measure(defaults.name_token_set, j) for j in JARO_WINKLER_GRID],
        "defaults": {"token_set": defaults.name_token_set, "jaro_winkler": defaults.name_jaro_winkler},
    }


def table(result: dict) -> str:
    """The figures as the Markdown table of benchmarks/NOTES.md."""
    lines = ["| token set | Jaro-Winkler | raised | true | false alarms | precision | recall |", "|---|---|---|---|---|---|---|"]
    rows = [("exact only", "", result["exact_only"])] + [
        (f"{m['token_set']:.2f}", f"{m['jaro_winkler']:.2f}", m) for m in result["by_token_set"] + result["by_jaro_winkler"]]
    for token_set, jaro_winkler, m in rows:
        lines.append(f"| {token_set} | {jaro_winkler} | {m['raised']} | {m['true_matches']} | {m['false_alarms']} | "
                     f"{m['precision']} | {m['recall']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--sample", type=int, default=SAMPLE)
    parser.add_argument("--write", action="store_true", help=f"store the figures in {RESULT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    result = evaluate(args.seed, args.sample)
    if args.write:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
