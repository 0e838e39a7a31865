"""The fine-tune form: every TrainConfig setting with its help, the presets, TrainConfig's own checks."""

from __future__ import annotations

from dataclasses import fields

from django.urls import reverse

from tests.training.test_jobs import JobTestCase
from training.core.config import PRESETS, TrainConfig
from training.core.fields import setting_default, setting_help
from training.forms import FineTuneForm
from training.models import TrainingJob


class FineTuneFormTestCase(JobTestCase):
    def post(self, **settings):
        """Post the form as drawn (every setting at its default) with ``settings`` changed."""
        data = {"base_model": self.model.pk, "dataset": self.dataset.pk}
        for name, value in FineTuneForm.presets_for_script()[""].items():
            data[name] = "" if value is None else str(value)
        data.update({k: str(v) for k, v in settings.items()})
        self.client.force_login(self.alice)
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(reverse("training:fine-tune"), data)

    def test_it_shows_every_setting_with_its_help_and_default(self):
        self.client.force_login(self.alice)
        response = self.client.get(reverse("training:fine-tune"))
        html = response.content.decode()
        for name in FineTuneForm.SETTING_FIELDS:
            self.assertIn(f'name="{name}"', html)
            help_text = setting_help(TrainConfig, name)
            self.assertIn(
                help_text[0].upper() + help_text[1:], response.context["form"].fields[name].help_text
            )
            default = setting_default(TrainConfig, name)
            if default is not None:
                self.assertEqual(response.context["form"][name].value(), default)
        for label in ("quick, CPU", "quality, GPU"):
            self.assertIn(label, html)
        self.assertIn("<legend>LoRA</legend>", html)
        self.assertIn('id="train-presets"', html)

    def test_every_setting_a_person_tunes_is_on_the_form(self):
        # What the form leaves out is decided elsewhere: the model, data and method, or the deployment.
        others = {"base_model", "method", "parent_adapter", "chat_template", "report_to", "run_name"}
        tuned = {f.name for f in fields(TrainConfig)} - others
        self.assertEqual(tuned, set(FineTuneForm.SETTING_FIELDS))

    def test_each_preset_makes_a_job_with_the_presets_settings(self):
        for preset, values in PRESETS.items():
            with self.subTest(preset=preset):
                TrainingJob.objects.all().delete()
                response = self.post(preset=preset)  # no script: the fields still show the defaults
                job = TrainingJob.objects.get()
                self.assertRedirects(response, reverse("training:job", args=[job.pk]))
                config = TrainConfig.from_dict(job.config)
                for name, value in values.items():
                    self.assertEqual(getattr(config, name), value, name)

    def test_a_setting_changed_by_hand_wins_over_the_preset(self):
        self.post(preset="quality-gpu", lora_r=12)
        job = TrainingJob.objects.get()
        self.assertEqual((job.config["lora_r"], job.config["batch_size"]), (12, 16))

    def test_a_preset_in_the_address_draws_the_form_filled_in(self):
        self.client.force_login(self.alice)
        form = self.client.get(reverse("training:fine-tune") + "?preset=quick-cpu").context["form"]
        self.assertEqual((form["lora_r"].value(), form.shown_preset), (8, "quick-cpu"))
        # Posting it unchanged keeps the preset (the shown values are the preset's).
        data = {"base_model": self.model.pk, "dataset": self.dataset.pk, "preset": "quick-cpu"}
        data |= {
            k: "" if v is None else str(v) for k, v in FineTuneForm.presets_for_script()["quick-cpu"].items()
        }
        data["shown_preset"] = "quick-cpu"
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(reverse("training:fine-tune"), data)
        self.assertEqual(TrainingJob.objects.get().config["max_steps"], PRESETS["quick-cpu"]["max_steps"])

    def test_it_refuses_bad_values_next_to_the_field_and_queues_nothing(self):
        cases = {
            "lora_r": ("0", "lora_r must be at least 1"),
            "warmup_ratio": ("-0.1", "warmup_ratio must be at least 0.0"),
            "eval_fraction": ("1.5", "eval_fraction must be less than 1.0"),
            "max_steps": ("0", "max_steps must be positive"),
        }
        for name, (value, message) in cases.items():
            with self.subTest(name=name):
                response = self.post(**{name: value})
                self.assertEqual(response.status_code, 200)
                errors = response.context["form"].errors
                self.assertIn(message, " ".join(errors[name]))
                self.assertContains(response, message)
        self.assertFalse(TrainingJob.objects.exists())

    def test_junk_in_any_setting_is_a_message_never_a_job(self):
        from tests.test_fuzz import JUNK

        for junk in JUNK:
            for name in (*FineTuneForm.SETTING_FIELDS, "preset", "shown_preset"):
                response = self.post(**{name: junk})
                if response.status_code == 200:  # refused, and the page says why
                    self.assertContains(response, 'class="errorlist', msg_prefix=f"{name} {junk[:20]!r}")
                    self.assertFalse(TrainingJob.objects.exists())
                else:  # a value TrainConfig takes ("0" warm-up, "-1" max_steps, a blank default)
                    self.assertEqual(response.status_code, 302, (name, junk[:20]))
                TrainingJob.objects.all().delete()

    def test_it_carries_the_chosen_settings_into_the_job(self):
        chosen = {
            "learning_rate": 0.003,
            "lr_scheduler": "cosine",
            "warmup_ratio": 0.1,
            "max_steps": 7,
            "batch_size": 2,
            "grad_accum": 3,
            "max_seq_length": 256,
            "eval_fraction": 0.25,
            "lora_r": 4,
            "lora_alpha": 8,
            "lora_dropout": 0.1,
            "dpo_beta": 0.2,
        }
        self.post(**chosen, target_modules="q_proj, v_proj")
        config = TrainingJob.objects.get().config
        self.assertEqual({k: config[k] for k in chosen}, chosen)
        self.assertEqual(config["target_modules"], ["q_proj", "v_proj"])
        self.assertEqual(config["report_to"], "none")  # the deployment's choice, set when the job runs
