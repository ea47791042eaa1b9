// Live preview of a journey's messages while editing: the form is sent to the preview endpoint (nothing is
// saved) and each step's message is shown in both languages, or the problems that stop it from rendering.
(function () {
  "use strict";
  var form = document.querySelector("form[data-preview-url]");
  if (!form || !window.fetch || !window.FormData) { return; }
  var url = form.getAttribute("data-preview-url");
  var timer = null;
  var sequence = 0;

  function errorsInto(list, errors) {
    list.textContent = "";
    errors.forEach(function (error) {
      var item = document.createElement("li");
      var code = document.createElement("code");
      code.textContent = error.field;
      item.appendChild(code);
      item.appendChild(document.createTextNode(": " + error.message));
      list.appendChild(item);
    });
  }

  function apply(payload) {
    (payload.previews || []).forEach(function (preview) {
      var box = form.querySelector('[data-preview="' + preview.step + "-" + preview.language + '"]');
      if (!box) { return; }
      errorsInto(box.querySelector(".preview-errors"), preview.errors || []);
      var subject = box.querySelector(".preview-subject");
      subject.hidden = preview.channel !== "email";
      subject.textContent = "";
      var strong = document.createElement("strong");
      strong.textContent = preview.subject || "";
      subject.appendChild(strong);
      var frame = box.querySelector(".preview-html");
      frame.hidden = !preview.html;
      // srcdoc of a sandboxed frame: the markup is shown, never run (no allow-scripts, and a CSP inside).
      if (frame.getAttribute("srcdoc") !== preview.html) { frame.setAttribute("srcdoc", preview.html || ""); }
      var text = box.querySelector(".preview-text");
      text.textContent = preview.text || "";
      text.classList.toggle("bubble", preview.channel !== "email");
    });
  }

  function refresh() {
    var mine = ++sequence;
    var data = new FormData(form);
    fetch(url, { method: "POST", body: data, credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (payload) { if (payload && mine === sequence) { apply(payload); } })
      .catch(function () { /* the last good preview stays */ });
  }

  form.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 350);
  });
  form.addEventListener("change", function (event) {
    var target = event.target;
    if (target && /^step-\d+-channel$/.test(target.name || "")) {
      // Subject and HTML only mean something for e-mail; the fields hide for SMS and DMs.
      var step = target.closest("fieldset.step");
      if (step) { step.setAttribute("data-channel", target.value); }
    }
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 50);
  });
})();
