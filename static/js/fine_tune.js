// The fine-tune form's preset select: fill in the preset's settings, leaving alone any setting the
// person changed from what the page showed (the rule the server applies when there is no script).
document.addEventListener("DOMContentLoaded", () => {
  const select = document.getElementById("id_preset");
  const shown = document.getElementById("id_shown_preset");
  const data = document.getElementById("train-presets");
  if (!select || !shown || !data) return;
  const presets = JSON.parse(data.textContent);
  const same = (text, value) =>
    text === String(value ?? "") || (text.trim() !== "" && typeof value === "number" && Number(text) === value);
  select.addEventListener("change", () => {
    const before = presets[shown.value] || presets[""];
    const after = presets[select.value] || presets[""];
    for (const [name, value] of Object.entries(after)) {
      const input = document.getElementById("id_" + name);
      if (input && (input.value.trim() === "" || same(input.value, before[name]))) {
        input.value = value ?? "";
      }
    }
    shown.value = select.value;
  });
});
