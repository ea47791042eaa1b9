// Moderation queue: keyboard shortcuts (j/k move, x select, a approve, r reject, ? help) and decisions
// sent with fetch so the queue updates in place. Without scripts the same form posts and reloads.
(function () {
  "use strict";
  var form = document.querySelector("[data-moderation]");
  var help = document.getElementById("mod-help");
  var status = document.getElementById("mod-status");
  if (!form) { return; }
  var canDecide = form.getAttribute("data-can-decide") === "1";
  var busy = false;

  var nav = window.TertuliaKeyList(form, ".mod-item");
  var items = nav.items;
  var move = nav.move;

  function say(text, ok) {
    status.textContent = "";
    status.className = "mod-status notice " + (ok ? "notice-ok" : "notice-error");
    // Written after a tick so a repeated sentence is announced again.
    window.setTimeout(function () { status.textContent = text; }, 30);
  }

  function box(item) { return item.querySelector("input[name=items]"); }

  function toggle(item) {
    var check = box(item);
    if (!check) { return; }
    check.checked = !check.checked;
    item.classList.toggle("is-selected", check.checked);
  }

  function decide(action, keys) {
    if (!canDecide || busy || !keys.length) { return; }
    busy = true;
    var data = new FormData();
    data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    data.append("action", action);
    keys.forEach(function (key) { data.append("items", key); });
    var leaving = items().filter(function (item) { return keys.indexOf(item.getAttribute("data-key")) >= 0; });
    leaving.forEach(function (item) { item.classList.add("is-leaving"); });
    fetch(form.getAttribute("action"), {
      method: "POST", body: data, credentials: "same-origin",
      headers: { Accept: "application/json", "X-Requested-With": "fetch" },
    })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (!response.ok) { throw new Error((body.error && body.error.message) || ("HTTP " + response.status)); }
          return body;
        });
      })
      .then(function (body) {
        var first = items().indexOf(leaving[0]);
        leaving.forEach(function (item) { item.remove(); });
        say(body.message || "", true);
        if (!items().length) {
          var empty = document.createElement("li");
          empty.className = "panel empty-state mod-empty";
          empty.textContent = form.getAttribute("data-empty") || "✓";
          form.querySelector(".mod-list").appendChild(empty);
          status.focus();
          return;
        }
        move(first < 0 ? nav.current() : first);
      })
      .catch(function (error) {
        leaving.forEach(function (item) { item.classList.remove("is-leaving"); });
        say(error.message, false);
      })
      .then(function () { busy = false; });
  }

  function chosen() {
    var keys = items().filter(function (item) { var c = box(item); return c && c.checked; })
      .map(function (item) { return item.getAttribute("data-key"); });
    if (!keys.length && nav.item()) { keys = [nav.item().getAttribute("data-key")]; }
    return keys;
  }

  // Buttons go through fetch too; the no-script path is the plain form post.
  form.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (!button || !window.fetch) { return; }
    event.preventDefault();
    if (button.name === "only") {
      var parts = button.value.split(":");
      decide(parts[0], [parts.slice(1).join(":")]);
    } else if (button.name === "action") {
      var keys = items().filter(function (item) { var c = box(item); return c && c.checked; })
        .map(function (item) { return item.getAttribute("data-key"); });
      if (!keys.length) { say(form.getAttribute("data-none") || "—", false); return; }
      decide(button.value, keys);
    }
  });

  form.addEventListener("change", function (event) {
    var target = event.target;
    if (target.hasAttribute("data-select-all")) {
      items().forEach(function (item) {
        var check = box(item);
        if (check) { check.checked = target.checked; item.classList.toggle("is-selected", target.checked); }
      });
    } else if (target.name === "items") {
      target.closest(".mod-item").classList.toggle("is-selected", target.checked);
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    var typing = target.matches("input:not([type=checkbox]), textarea, select, [contenteditable]");
    if (typing) { return; }
    if (help && help.open && event.key !== "?") { return; }
    switch (event.key) {
      // The first j or k only shows where you are.
      case "j": nav.step(1); break;
      case "k": nav.step(-1); break;
      case "x": if (nav.item()) { toggle(nav.item()); move(nav.current()); } break;
      case "a": decide("approve", chosen()); break;
      case "r": decide("reject", chosen()); break;
      case "?":
        if (!help) { return; }
        if (help.open) { help.close(); } else { help.showModal(); }
        break;
      default: return;
    }
    event.preventDefault();
  });

  status.setAttribute("tabindex", "-1");
  move(0, false);
})();
