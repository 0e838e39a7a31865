"""The course's teacher adapter is loaded once into each loaded teacher, and again into a new one."""

from __future__ import annotations

from tests.base import BaseTestCase
from tests.tutor.learn.fixtures import make_course
from training import services as training_services
from training.models import Adapter, LanguageModel
from tutor.learn import services


class FakeLLM:
    def __init__(self) -> None:
        self.loaded: list[tuple[str, str]] = []

    def load_adapter(self, name: str, path: str) -> None:
        self.loaded.append((name, path))


class TeacherAdapterTestCase(BaseTestCase):
    def setUp(self) -> None:
        self.model = LanguageModel.objects.create(
            name="t", backend="transformers", source="/m", is_teacher=True
        )
        self.adapter = Adapter.objects.create(base_model=self.model, version=1, path="/a/v1", method="sft")
        self.course = make_course()
        self.course.teacher_adapter = self.adapter
        self.course.save()

    def teacher(self, llm: FakeLLM):
        """What the generating side does with a request's adapter (training.generation)."""
        adapter = services.teacher_adapter_of(model=self.model, course=self.course)
        assert adapter is not None
        return llm, training_services.language_model_adapter_on(llm=llm, name=adapter[0], path=adapter[1])

    def test_another_models_adapter_or_a_served_teacher_gets_none(self):
        other = LanguageModel.objects.create(name="o", backend="transformers", source="/o", is_teacher=True)
        self.assertIsNone(services.teacher_adapter_of(model=other, course=self.course))
        self.model.backend = "openai"
        self.assertIsNone(services.teacher_adapter_of(model=self.model, course=self.course))

    def test_it_loads_the_adapter_once_per_loaded_model(self):
        llm = FakeLLM()
        self.assertEqual(self.teacher(llm), (llm, f"adapter-{self.adapter.pk}"))
        self.teacher(llm)
        self.assertEqual(llm.loaded, [(f"adapter-{self.adapter.pk}", "/a/v1")])

    def test_a_reloaded_model_gets_the_adapter_again_even_at_the_same_address(self):
        # After an admin save the registry loads a new object, which may reuse a freed object's id().
        first = FakeLLM()
        self.teacher(first)
        del first
        for _ in range(50):  # new objects, some of which land at the freed address
            llm = FakeLLM()
            self.teacher(llm)
            self.assertEqual(llm.loaded, [(f"adapter-{self.adapter.pk}", "/a/v1")])
