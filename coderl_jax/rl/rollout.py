"""Rollout: sampled programs of problems from given params, as rows (SPEC §3).

The project's one "problems -> requests -> rows" loop: `generate`, the critic data, online RL and
critical sampling all turn problems into `SampleRequest`s (`requests_for`) and the sampler's
output into rows (`sample_rows`); `Rollout` holds a jitted, mesh-sharded `Sampler` whose params
the caller replaces (`set_params`, e.g. after every online RL update). A row:

    problem_id, sample_index, prompt_ids, output_ids (EOS included when produced), code, logprob

Sample i of a problem draws from a key of (seed, problem id, i) (see `inference/sampler.py`), so
rows do not depend on batching, grouping, the order of problems or the number of processes.
On several processes every process runs the same sampler call (one SPMD program over the mesh,
each device decoding its share of rows) and receives every row; `host_share` picks the problems
whose rows this process executes and trains on.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Sequence

from coderl_jax.data.prompts import build_prompt, program_code, truncate_prompt
from coderl_jax.errors import UserError
from coderl_jax.inference import sampler as sampler_lib
from coderl_jax.inference.decoding import SamplingConfig


def prompt_ids(problem, tokenizer, max_source_len: int, style: str = "train") -> list[int]:
    """The problem's prompt tokens, cut to `max_source_len` (EOS kept)."""
    return truncate_prompt(tokenizer.encode(build_prompt(problem, style)), max_source_len,
                           tokenizer.eos_id)


def requests_for(problems: Sequence, prompts: Sequence[Sequence[int]],
                 indices: Sequence[Sequence[int]] | int) -> list[sampler_lib.SampleRequest]:
    """One request per problem: its prompt ids and sample indices (`range(n)` for an int n)."""
    if isinstance(indices, int):
        indices = [tuple(range(indices))] * len(problems)
    return [sampler_lib.SampleRequest(p.problem_id, list(ids), tuple(idx))
            for p, ids, idx in zip(problems, prompts, indices)]


def sample_rows(sampler, requests: Sequence, problems: Sequence, tokenizer, *, seed: int,
                progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict]]:
    """(request index, row) per sampled program, as the sampler finishes them; `problems[i]` is
    the problem of `requests[i]` (its `code` is `program_code` of the decoded completion)."""
    for s in sampler.sample(requests, seed=seed):
        problem, req = problems[s.request_index], requests[s.request_index]
        yield s.request_index, {
            "problem_id": problem.problem_id, "sample_index": s.sample_index,
            "prompt_ids": list(req.prompt_ids), "output_ids": s.output_ids,
            "code": program_code(problem, tokenizer.decode(s.output_ids, skip_special_tokens=True)),
            "logprob": s.logprob}
        if progress is not None:
            progress(1)


def host_share(items: Sequence, process_index: int, process_count: int,
               even: bool = True) -> list:
    """This process's contiguous share of `items`, in order (process i's share precedes
    process i+1's: the global batch's row order). `even`: the shares must be equal (a training
    batch), else the first `len % count` processes take one more."""
    if even and len(items) % process_count:
        raise UserError(f"{len(items)} problems do not split evenly over {process_count} "
                        "processes")
    q, r = divmod(len(items), process_count)
    start = process_index * q + min(process_index, r)
    return list(items[start: start + q + (process_index < r)])


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """How a rollout samples: settings of its sampler and prompts."""

    sampling: SamplingConfig = SamplingConfig()
    batch_size: int = 8  # (problem, sample) rows per decode call
    max_new_tokens: int = 512
    max_source_len: int = 600
    prompt_style: str = "train"


class Rollout:
    """N programs per problem from the params it was last given (see the module docstring)."""

    def __init__(self, model_config, params: Any, tokenizer, config: RolloutConfig, *,
                 mesh=None, rules=None):
        self.config, self.tokenizer = config, tokenizer
        self.sampler = sampler_lib.Sampler(
            model_config, params, mesh=mesh, rules=rules, batch_size=config.batch_size,
            max_new_tokens=config.max_new_tokens, max_source_len=config.max_source_len,
            sampling=config.sampling)
        self._prompts: dict[str, list[int]] = {}

    def set_params(self, params: Any) -> None:
        """Sample from `params` from now on (same shapes: no recompile)."""
        self.sampler.set_params(params)

    def prompt(self, problem) -> list[int]:
        ids = self._prompts.get(problem.problem_id)
        if ids is None:
            ids = prompt_ids(problem, self.tokenizer, self.config.max_source_len,
                             self.config.prompt_style)
            self._prompts[problem.problem_id] = ids
        return ids

    def run(self, problems: Sequence, num_samples: int, seed: int,
            progress: Callable[[int], None] | None = None) -> list[dict]:
        """`num_samples` rows per problem, ordered by (problem as given, sample index)."""
        requests = requests_for(problems, [self.prompt(p) for p in problems], num_samples)
        rows = list(sample_rows(self.sampler, requests, problems, self.tokenizer, seed=seed,
                                progress=progress))
        rows.sort(key=lambda ir: (ir[0], ir[1]["sample_index"]))
        return [row for _, row in rows]
