"""(c) The work as a minimal hand-written PyTorch loop: HF forwards with hidden states and attentions, MSE losses,
AdamW. One process, one JSON result."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import MAX_GRAD_NORM, base_parser, finish, reference_run


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (the precision bertpress picks on bf16 hardware)")
    args = p.parse_args()
    run = reference_run(args)
    teacher, student, mapping, opt, schedule = run.teacher, run.student, run.mapping, run.opt, run.schedule
    losses: list[float] = []
    autocast = torch.autocast(torch.device(args.device).type, torch.bfloat16, enabled=args.bf16)
    for batch in run.loader:
        batch = {k: v.to(args.device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            with torch.no_grad():
                t = teacher(**batch, output_hidden_states=True, output_attentions=True)
            s = student(**batch, output_hidden_states=True, output_attentions=True)
            # packed blocks have no padding, so a plain mean is the mean over real tokens (and the equivalence
            # check against bertpress's masked means would fail otherwise)
            loss = F.mse_loss(s.hidden_states[0].float(), t.hidden_states[0].float())
            for i, j in enumerate(mapping, start=1):
                loss = loss + F.mse_loss(s.hidden_states[i].float(), t.hidden_states[j].float())
            for i, j in enumerate(mapping, start=1):
                loss = loss + F.mse_loss(s.attentions[i - 1].float(), t.attentions[j - 1].float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), MAX_GRAD_NORM)
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    finish(args.out, {"system": "plain", "losses": losses, "dropout": not args.no_dropout, "bf16": args.bf16},
           run.clock, args.warmup, args.steps)


if __name__ == "__main__":
    main()
