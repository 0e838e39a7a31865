"""Rounds of a teaching run as rows (``Round``) instead of the run's ``results`` and ``round_jobs`` JSON.

The conversion is a frozen copy of the rule in ``tutor.teaching.run_rounds_sync`` (a migration must
not change when the app's code does): a column per known key, ``None`` as the column's default
where the column is not nullable, every other key in ``extra``; ``round_jobs`` becomes the FK
(a job deleted since is dropped: the JSON never protected it).
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

SKIPPED = ("id", "run", "index", "training_job", "extra")


def round_values(fields: list, result: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One old ``results`` entry -> (round index, the new row's field values)."""
    rest = dict(result)
    index = rest.pop("round")
    values = {}
    for field in fields:
        if field.name in SKIPPED or field.name not in rest:
            continue
        value = rest.pop(field.name)
        values[field.name] = field.get_default() if value is None and not field.null else value
    return index, {**values, "extra": rest}


def rows_from_json(apps, schema_editor) -> None:
    TeachingRun = apps.get_model("tutor", "TeachingRun")
    Round = apps.get_model("tutor", "Round")
    TrainingJob = apps.get_model("training", "TrainingJob")
    fields = Round._meta.concrete_fields
    for run in TeachingRun.objects.all().iterator():
        rounds = dict(round_values(fields, result) for result in run.results or [])
        jobs = {int(index): pk for index, pk in (run.round_jobs or {}).items()}
        alive = set(TrainingJob.objects.filter(pk__in=jobs.values()).values_list("pk", flat=True))
        for index, pk in jobs.items():
            rounds.setdefault(index, {})["training_job_id"] = pk if pk in alive else None
        Round.objects.bulk_create(Round(run=run, index=index, **values) for index, values in sorted(rounds.items()))


def json_from_rows(apps, schema_editor) -> None:
    TeachingRun = apps.get_model("tutor", "TeachingRun")
    Round = apps.get_model("tutor", "Round")
    fields = [f for f in Round._meta.concrete_fields if f.name not in SKIPPED]
    for run in TeachingRun.objects.all().iterator():
        rows = list(Round.objects.filter(run=run).order_by("index"))
        run.results = [{"round": r.index, **{f.name: getattr(r, f.name) for f in fields}, **r.extra} for r in rows]
        run.round_jobs = {str(r.index): r.training_job_id for r in rows if r.training_job_id is not None}
        run.save(update_fields=["results", "round_jobs"])


class Migration(migrations.Migration):

    dependencies = [
        ('training', '0002_adapter_trainingdataset_trainingjob_trainingmetric_and_more'),
        ('tutor', '0004_run_explanations'),
    ]

    operations = [
        migrations.CreateModel(
            name='Round',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('index', models.PositiveIntegerField(help_text='0-based; pages show index + 1')),
                ('done_steps', models.JSONField(blank=True, default=list)),
                ('probe', models.JSONField(blank=True, default=dict, help_text='probe accuracy per skill (diagnose)')),
                ('exam', models.JSONField(blank=True, default=dict, help_text='exam accuracy per skill (re-examine)')),
                ('base', models.JSONField(blank=True, default=dict, help_text="the base model's exam accuracy per skill")),
                ('accuracy', models.FloatField(blank=True, help_text='exam accuracy over all skills', null=True)),
                ('base_accuracy', models.FloatField(blank=True, null=True)),
                ('vs_base', models.FloatField(blank=True, null=True)),
                ('vs_previous', models.FloatField(blank=True, null=True)),
                ('agreement', models.FloatField(blank=True, help_text="how often the student's exam answer is the teacher's", null=True)),
                ('teacher_accuracy', models.FloatField(blank=True, null=True)),
                ('explained', models.PositiveIntegerField(default=0)),
                ('dropped_explanations', models.PositiveIntegerField(default=0, help_text='dropped by the answer check')),
                ('helped', models.PositiveIntegerField(default=0)),
                ('generated_kept', models.PositiveIntegerField(default=0)),
                ('sft_records', models.PositiveIntegerField(default=0)),
                ('warnings', models.JSONField(blank=True, default=list)),
                ('train_note', models.TextField(blank=True)),
                ('adapter_path', models.CharField(blank=True, help_text="the student's adapter after this round", max_length=1000)),
                ('extra', models.JSONField(blank=True, default=dict, help_text='further summary keys, e.g. the forgetting probe')),
                ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='rounds', to='tutor.teachingrun')),
                ('training_job', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='teaching_rounds', to='training.trainingjob')),
            ],
            options={
                'ordering': ['run', 'index'],
                'constraints': [models.UniqueConstraint(fields=('run', 'index'), name='round_index_per_run')],
            },
        ),
        migrations.RunPython(rows_from_json, json_from_rows),
        migrations.RemoveField(
            model_name='teachingrun',
            name='results',
        ),
        migrations.RemoveField(
            model_name='teachingrun',
            name='round_jobs',
        ),
    ]
