// Tutoring session page: connection state, clearing the question box after it is sent.
// Messages themselves are HTML fragments swapped in by htmx's ws extension (escaped server-side).
(function () {
  function setState(state, text) {
    var el = document.getElementById("tutor-connection");
    if (el) { el.dataset.state = state; el.textContent = text; }
  }
  document.addEventListener("htmx:wsOpen", function () { setState("open", "connected"); });
  document.addEventListener("htmx:wsClose", function () { setState("closed", "reconnecting…"); });
  document.addEventListener("htmx:wsAfterSend", function (event) {
    var form = event.detail && event.detail.elt;
    if (form && form.id === "question-form") { form.reset(); }
  });
})();
