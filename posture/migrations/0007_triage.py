"""Fleet triage (issue 13): exceptions replace one-by-one acceptances, findings carry their
container's image and compose project, and the risk score stops saturating.

Data steps, in one pass after the schema changes:
- every RiskAcceptance becomes an exception scoped to its one finding (the newest one of
  an accepted finding stays active and covers it; older ones are recorded as expired);
- image and compose project are copied onto container findings from the inventory;
- every stored risk sample and host score is recomputed with the new formula from the
  points the samples kept (their breakdown), so old and new samples stay comparable.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

HALF_POINTS = 100.0  # posture/risk.py at the time of this migration


def scale(points):
    if points <= 0:
        return 0
    return max(1, min(100, int(100 * points / (points + HALF_POINTS) + 0.5)))


def migrate_acceptances(apps, now):
    RiskAcceptance = apps.get_model("posture", "RiskAcceptance")
    RiskException = apps.get_model("posture", "RiskException")
    Finding = apps.get_model("posture", "Finding")
    seen = set()
    for a in RiskAcceptance.objects.select_related("finding").order_by("finding_id", "-created_at", "-pk").iterator(chunk_size=1000):
        f = a.finding
        newest = f.pk not in seen
        seen.add(f.pk)
        active = newest and (f.status == "accepted" or a.expires_at > now)
        exception = RiskException.objects.create(
            rule_id=f.rule_id,
            host_id=f.host_id,
            finding=f,
            justification=a.justification,
            owner_id=a.accepted_by_id,
            created_by_id=a.accepted_by_id,
            created_at=a.created_at,
            expires_at=a.expires_at,
            status="active" if active else "expired",
            ended_at=None if active else min(a.expires_at, now),
        )
        if newest and f.status == "accepted":
            Finding.objects.filter(pk=f.pk).update(exception=exception, accepted_until=a.expires_at)


def backfill_containers(apps):
    Finding = apps.get_model("posture", "Finding")
    ContainerRecord = apps.get_model("posture", "ContainerRecord")
    same = ContainerRecord.objects.filter(host_id=OuterRef("host_id"), subject_key=OuterRef("subject_key"))
    Finding.objects.filter(subject_type="container").update(
        image=Coalesce(Subquery(same.values("image")[:1]), Value("")),
        compose_project=Coalesce(Subquery(same.values("compose_project")[:1]), Value("")),
    )


def recompute_risk(apps, schema_editor, now):
    RiskSample = apps.get_model("posture", "RiskSample")
    DockerHost = apps.get_model("posture", "DockerHost")
    Finding = apps.get_model("posture", "Finding")
    if schema_editor.connection.vendor == "postgresql":
        # One statement for the whole history: the breakdown kept every contribution's points.
        schema_editor.execute(
            "UPDATE posture_risksample SET points = COALESCE((SELECT SUM((c->>'points')::float) FROM jsonb_array_elements(breakdown) c), 0)"
        )
        schema_editor.execute(
            "UPDATE posture_risksample SET score = CASE WHEN points <= 0 THEN 0 "
            "ELSE GREATEST(1, LEAST(100, FLOOR(100 * points / (points + %s) + 0.5))) END",
            [HALF_POINTS],
        )
    else:
        batch = []
        for sample in RiskSample.objects.only("pk", "breakdown").iterator(chunk_size=2000):
            sample.points = sum(float(c.get("points", 0)) for c in sample.breakdown or [])
            sample.score = scale(sample.points)
            batch.append(sample)
            if len(batch) >= 2000:
                RiskSample.objects.bulk_update(batch, ["points", "score"])
                batch = []
        RiskSample.objects.bulk_update(batch, ["points", "score"])
    counted = Finding.objects.filter(models.Q(status="open") | models.Q(status="accepted", accepted_until__lte=now))
    ties = {
        row["host_id"]: row
        for row in counted.values("host_id").annotate(
            critical=models.Count("pk", filter=models.Q(severity="critical")),
            exposed_critical=models.Count("pk", filter=models.Q(severity="critical", exposed=True)),
            high=models.Count("pk", filter=models.Q(severity="high")),
        )
    }
    hosts = list(DockerHost.objects.only("pk", "risk_breakdown"))
    for host in hosts:
        host.risk_points = sum(float(c.get("points", 0)) for c in host.risk_breakdown or [])
        host.risk_score = scale(host.risk_points)
        row = ties.get(host.pk, {})
        host.risk_critical, host.risk_exposed_critical, host.risk_high = row.get("critical", 0), row.get("exposed_critical", 0), row.get("high", 0)
    DockerHost.objects.bulk_update(hosts, ["risk_points", "risk_score", "risk_critical", "risk_exposed_critical", "risk_high"], batch_size=1000)


# Infix globs (?image=*app*) and free text (?q=) on PostgreSQL: trigram indexes serve LIKE and
# ILIKE with a wildcard on both sides. pg_trgm is a trusted extension (PostgreSQL 13+): the
# database owner may create it. Other databases scan, which is fine at their sizes.
TRIGRAM = {"finding_title_trgm": "title", "finding_subject_trgm": "subject_name", "finding_image_trgm": "image"}


def trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in TRIGRAM.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON posture_finding USING gin ({column} gin_trgm_ops)")


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in TRIGRAM:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # Row changes and the table drop that follows share one transaction.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    now = django.utils.timezone.now()
    migrate_acceptances(apps, now)
    backfill_containers(apps)
    recompute_risk(apps, schema_editor, now)


class Migration(migrations.Migration):

    dependencies = [
        ('posture', '0006_alerts_api'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='dockerhost',
            name='risk_critical',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='dockerhost',
            name='risk_exposed_critical',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='dockerhost',
            name='risk_high',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='dockerhost',
            name='risk_points',
            field=models.FloatField(default=0),
        ),
        migrations.AddField(
            model_name='finding',
            name='compose_project',
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name='finding',
            name='image',
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddField(
            model_name='risksample',
            name='points',
            field=models.FloatField(default=0),
        ),
        migrations.AlterField(
            model_name='auditentry',
            name='action',
            field=models.CharField(choices=[('host.add', 'Host registered'), ('host.edit', 'Host edited'), ('host.remove', 'Host removed'), ('host.poll', 'Poll requested'), ('finding.accept', 'Risk accepted'), ('exception.add', 'Exception created'), ('exception.edit', 'Exception edited'), ('exception.expire', 'Exception expired'), ('exception.remove', 'Exception removed'), ('report.generate', 'Report requested'), ('schedule.add', 'Report schedule added'), ('schedule.change', 'Report schedule changed'), ('schedule.enable', 'Report schedule resumed'), ('schedule.disable', 'Report schedule paused'), ('schedule.delete', 'Report schedule removed'), ('user.add', 'User created'), ('user.change', 'User changed'), ('user.remove', 'User removed'), ('user.role', 'User role changed'), ('channel.add', 'Notification channel added'), ('channel.edit', 'Notification channel paused or resumed'), ('channel.remove', 'Notification channel removed'), ('channel.test', 'Notification channel tested'), ('alert_rule.add', 'Alert rule added'), ('alert_rule.remove', 'Alert rule removed'), ('token.add', 'API token created'), ('token.revoke', 'API token revoked')], max_length=50),
        ),
        migrations.AlterField(
            model_name='findingevent',
            name='kind',
            field=models.CharField(choices=[('opened', 'Opened'), ('changed', 'Changed'), ('resolved', 'Resolved'), ('reopened', 'Reopened'), ('accepted', 'Risk accepted'), ('acceptance_expired', 'Acceptance expired'), ('acceptance_withdrawn', 'Exception removed')], max_length=24),
        ),
        migrations.CreateModel(
            name='RiskException',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('rule_id', models.CharField(blank=True, max_length=64, verbose_name='rule')),
                ('max_severity', models.CharField(blank=True, choices=[('critical', 'Critical'), ('high', 'High'), ('medium', 'Medium'), ('low', 'Low'), ('info', 'Info')], max_length=10, verbose_name='severity and below')),
                ('labels', models.JSONField(blank=True, default=dict)),
                ('image', models.CharField(blank=True, max_length=300, verbose_name='image glob')),
                ('project', models.CharField(blank=True, max_length=200, verbose_name='compose project')),
                ('name', models.CharField(blank=True, max_length=300, verbose_name='container name glob')),
                ('justification', models.TextField()),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('expires_at', models.DateTimeField()),
                ('status', models.CharField(choices=[('active', 'Active'), ('expired', 'Expired'), ('removed', 'Removed')], default='active', max_length=10)),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('finding', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='exceptions', to='posture.finding')),
                ('host', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='exceptions', to='posture.dockerhost')),
                ('owner', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-pk'],
            },
        ),
        migrations.AddField(
            model_name='finding',
            name='exception',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='covered', to='posture.riskexception'),
        ),
        migrations.RemoveIndex(
            model_name='finding',
            name='finding_rule_status',
        ),
        migrations.AddIndex(
            model_name='finding',
            index=models.Index(fields=['rule_id', 'status', 'host'], name='finding_rule_status_host'),
        ),
        migrations.AddIndex(
            model_name='finding',
            index=models.Index(models.OrderBy(models.Case(models.When(severity='critical', then=4), models.When(severity='high', then=3), models.When(severity='medium', then=2), models.When(severity='low', then=1), models.When(severity='info', then=0), default=-1, output_field=models.IntegerField()), descending=True), models.F('rule_id'), models.F('host'), models.F('id'), name='finding_explorer_order'),
        ),
        migrations.AddIndex(
            model_name='finding',
            index=models.Index(fields=['first_seen'], name='finding_first_seen'),
        ),
        migrations.AddIndex(
            model_name='finding',
            index=models.Index(condition=models.Q(('resolved_at__isnull', False)), fields=['resolved_at'], name='finding_resolved_at'),
        ),
        migrations.RunPython(trigram_indexes, drop_trigram_indexes),
        migrations.AddIndex(
            model_name='finding',
            index=models.Index(fields=['image'], name='finding_image', opclasses=['varchar_pattern_ops']),
        ),
        migrations.AddIndex(
            model_name='finding',
            index=models.Index(fields=['subject_name'], name='finding_subject_name', opclasses=['varchar_pattern_ops']),
        ),
        migrations.AddIndex(
            model_name='finding',
            index=models.Index(fields=['compose_project'], name='finding_project'),
        ),
        migrations.AddIndex(
            model_name='finding',
            index=models.Index(fields=['exception', 'status'], name='finding_exception'),
        ),
        migrations.AddIndex(
            model_name='riskexception',
            index=models.Index(fields=['status', 'expires_at'], name='exception_due'),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
        migrations.DeleteModel(
            name='RiskAcceptance',
        ),
    ]
