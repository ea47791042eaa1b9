// The team inbox: keyboard shortcuts, the canned-reply picker, the reply's character count and the
// presence heartbeat ("Ana is also viewing"). Every action is also a plain form: without scripts the
// pages work the same, only without the shortcuts and the live warning.
(function () {
  "use strict";
  var help = document.getElementById("inbox-help");
  var list = document.querySelector("[data-inbox-list]");
  var reply = document.getElementById("reply-text");
  var note = document.getElementById("note-text");
  var cannedDialog = document.getElementById("inbox-canned");
  var presence = document.getElementById("inbox-presence");

  function byId(id) { return document.getElementById(id); }

  function press(id) {
    var element = byId(id);
    if (!element) { return false; }
    element.click();
    return true;
  }

  function csrf() {
    var field = document.querySelector("[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  // --- the list -------------------------------------------------------------------------------
  var nav = window.TertuliaKeyList(list, ".inbox-row");

  function openCurrent() {
    var row = nav.item();
    if (!row) { return false; }
    window.location.href = row.getAttribute("data-href");
    return true;
  }

  if (list) { nav.move(0, false); }

  // --- the reply box: count, canned replies ----------------------------------------------------
  var counter = byId("reply-count");

  function length(text) { return Array.from(text.trim()).length; }  // code points, as the server counts

  function recount() {
    if (!reply || !counter) { return; }
    var limit = parseInt(reply.getAttribute("data-limit"), 10) || 0;
    var used = length(reply.value);
    counter.textContent = used + " / " + limit;
    counter.classList.toggle("is-over", used > limit);
  }

  var canned = [];
  var cannedData = byId("inbox-canned-data");
  if (cannedData) { canned = JSON.parse(cannedData.textContent); }
  var filter = byId("canned-filter");

  function language() {
    var chosen = document.querySelector("input[name=language]:checked");
    return chosen ? chosen.value : "es";
  }

  function insert(text) {
    var start = reply.selectionStart || 0;
    var end = reply.selectionEnd || start;
    reply.value = reply.value.slice(0, start) + text + reply.value.slice(end);
    var caret = start + text.length;
    reply.focus();
    reply.setSelectionRange(caret, caret);
    reply.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function choices() { return cannedDialog ? Array.prototype.slice.call(cannedDialog.querySelectorAll(".canned-choice")) : []; }

  function visibleChoices() { return choices().filter(function (button) { return !button.closest("li").hidden; }); }

  function choose(id) {
    var item = canned.filter(function (entry) { return String(entry.id) === String(id); })[0];
    if (!item || !reply) { return; }
    cannedDialog.close();
    insert(item[language()] || "");
    byId("reply-canned-id").value = item.id;
  }

  function openCanned() {
    if (!cannedDialog || !reply) { return false; }
    cannedDialog.showModal();
    if (filter) {
      filter.value = "";
      applyFilter();
      filter.focus();
    }
    return true;
  }

  function applyFilter() {
    var wanted = (filter.value || "").trim().toLowerCase();
    choices().forEach(function (button) {
      button.closest("li").hidden = wanted !== "" && button.getAttribute("data-search").indexOf(wanted) < 0;
    });
  }

  if (cannedDialog) {
    cannedDialog.addEventListener("click", function (event) {
      var button = event.target.closest(".canned-choice");
      if (button) { choose(button.getAttribute("data-canned")); }
    });
    if (filter) {
      filter.addEventListener("input", applyFilter);
      filter.addEventListener("keydown", function (event) {
        var first = visibleChoices()[0];
        if (event.key === "Enter" && first) { event.preventDefault(); choose(first.getAttribute("data-canned")); }
        if (event.key === "ArrowDown" && first) { event.preventDefault(); first.focus(); }
      });
    }
    cannedDialog.addEventListener("keydown", function (event) {
      var all = visibleChoices();
      var at = all.indexOf(document.activeElement);
      if (at < 0) { return; }
      if (event.key === "ArrowDown" && at < all.length - 1) { event.preventDefault(); all[at + 1].focus(); }
      if (event.key === "ArrowUp") { event.preventDefault(); if (at > 0) { all[at - 1].focus(); } else if (filter) { filter.focus(); } }
    });
  }
  var cannedOpen = byId("canned-open");
  if (cannedOpen) { cannedOpen.addEventListener("click", openCanned); }

  // Ctrl+Enter sends; Escape leaves the box so the shortcuts work again.
  function boxKeys(box, submitId) {
    if (!box) { return; }
    box.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        press(submitId);
      } else if (event.key === "Escape") {
        box.blur();
      }
    });
  }
  boxKeys(reply, byId("reply-force") ? "reply-force" : "reply-send");
  boxKeys(note, "note-add");

  // --- presence ----------------------------------------------------------------------------------
  var composing = false;
  var shown = presence ? presence.textContent.trim() : "";

  function showViewers(body) {
    if (!body || !presence) { return; }
    var lines = (body.viewers || []).map(function (viewer) { return viewer.text; });
    var seen = parseInt(presence.getAttribute("data-seen"), 10) || 0;
    if (body.newest_message_id && body.newest_message_id > seen) { lines.push(presence.getAttribute("data-new")); }
    var text = lines.join("\n");
    if (text === shown) { return; }  // unchanged: nothing new for a screen reader to announce
    shown = text;
    presence.textContent = "";
    lines.forEach(function (line) {
      var p = document.createElement("p");
      p.textContent = line;
      presence.appendChild(p);
    });
    presence.classList.toggle("is-empty", !lines.length);
  }

  function beat() {
    if (!presence || !window.fetch) { return; }
    var data = new FormData();
    data.append("csrfmiddlewaretoken", csrf());
    data.append("composing", composing ? "1" : "0");
    fetch(presence.getAttribute("data-url"), {
      method: "POST", body: data, credentials: "same-origin",
      headers: { Accept: "application/json", "X-Requested-With": "fetch" },
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(showViewers)
      .catch(function () { /* the next beat tries again */ });
  }

  if (presence) {
    var seconds = parseInt(presence.getAttribute("data-heartbeat"), 10) || 10;
    window.setInterval(beat, seconds * 1000);
    // Leaving says so at once; a form posted here comes back to this conversation, and a "leave"
    // arriving after the next page said "here" would hide this agent from the others until the next beat.
    var staying = false;
    document.addEventListener("submit", function () { staying = true; });
    window.addEventListener("pagehide", function () {
      if (staying || !navigator.sendBeacon) { return; }
      var data = new FormData();
      data.append("csrfmiddlewaretoken", csrf());
      data.append("leave", "1");
      navigator.sendBeacon(presence.getAttribute("data-url"), data);
    });
  }

  if (reply) {
    reply.addEventListener("input", function () {
      recount();
      var now = reply.value.trim() !== "";
      if (now !== composing) {
        composing = now;
        beat();  // the others learn at once that someone is writing (or stopped)
      }
    });
    composing = reply.value.trim() !== "";
    recount();
  }

  // --- shortcuts ---------------------------------------------------------------------------------
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (target.matches("input, textarea, select, [contenteditable]")) { return; }
    if (cannedDialog && cannedDialog.open) { return; }
    if (help && help.open && event.key !== "?") { return; }
    switch (event.key) {
      // The first j or k only shows where you are.
      case "j": if (!list) { return; } nav.step(1); break;
      case "k": if (!list) { return; } nav.step(-1); break;
      case "o": if (!openCurrent()) { return; } break;
      case "Enter":
        if (!list || target.closest("a, button")) { return; }
        if (!openCurrent()) { return; }
        break;
      case "r": if (!reply) { return; } reply.focus(); break;
      case "n": if (!note) { return; } note.focus(); break;
      case "c": if (!openCanned()) { return; } break;
      case "e": if (!press("inbox-resolve")) { return; } break;
      case "s": {
        var snooze = byId("inbox-snooze");
        if (!snooze) { return; }
        snooze.focus();
        break;
      }
      case "a": if (!press("inbox-assign-me")) { return; } break;
      case "u": {
        var back = byId("inbox-back");
        if (!back) { return; }
        window.location.href = back.href;
        break;
      }
      case "?":
        if (!help) { return; }
        if (help.open) { help.close(); } else { help.showModal(); }
        break;
      default: return;
    }
    event.preventDefault();
  });
})();
