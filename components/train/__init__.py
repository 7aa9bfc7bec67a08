"""`desta train`: DeepSpeed ZeRO training of the DeSTA connector.

Modules: `data` (rows, audio checks, length-bucketed resumable batch plan, encoder states),
`dsconfig` (effective DeepSpeed config from infra/deepspeed + params), `launch` (job, launcher,
resume decisions, errors), `worker` (one rank's process), `recipe` (a rank's training in named phases), `memory` (ZeRO memory on paper), `cli`.
"""
