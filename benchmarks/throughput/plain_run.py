"""(c) The work as a minimal hand-written PyTorch loop: HF forwards with hidden states and attentions, MSE losses,
AdamW. One process, one JSON result."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import MAX_GRAD_NORM, base_parser, finish, reference_run


def main() -> None:
    args = base_parser(__doc__).parse_args()
    run = reference_run(args)
    teacher, student, mapping, opt, schedule = run.teacher, run.student, run.mapping, run.opt, run.schedule
    losses: list[float] = []
    for batch in run.loader:
        with torch.no_grad():
            t = teacher(**batch, output_hidden_states=True, output_attentions=True)
        s = student(**batch, output_hidden_states=True, output_attentions=True)
        # packed blocks have no padding, so a plain mean is the mean over real tokens (and the equivalence
        # check against bertpress's masked means would fail otherwise)
        loss = F.mse_loss(s.hidden_states[0], t.hidden_states[0])
        for i, j in enumerate(mapping, start=1):
            loss = loss + F.mse_loss(s.hidden_states[i], t.hidden_states[j])
        for i, j in enumerate(mapping, start=1):
            loss = loss + F.mse_loss(s.attentions[i - 1], t.attentions[j - 1])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), MAX_GRAD_NORM)
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    finish(args.out, {"system": "plain", "losses": losses, "dropout": not args.no_dropout},
           run.clock, args.warmup, args.steps)


if __name__ == "__main__":
    main()
