"""Recipes that start from a trained model: ``add_task`` (few-shot new tasks), ``finetune`` (per-task fine-tuning
after joint training), ``distill`` (single-task teachers into one student), ``affinity`` (which tasks help which)."""
