// The prompt form's extras: a picture attached by the file input, by pasting it into the prompt
// or by dropping it on the form (a chip shows it, with Remove); Edit / Edit image / Follow up
// loading their chip in place; Regenerate into Results. The server checks every picture again.
(function () {
  "use strict";

  var MAX_BYTES = 20 * 1024 * 1024;
  var TYPES = /^image\/(png|jpeg|webp|gif)$/;

  function byId(id) { return document.getElementById(id); }
  function input() { return byId("image"); }

  // The prompt as it was before an Edit filled in the turn's prompt: Cancel brings it back.
  var savedPrompt = null;
  // The picture sent with the running request: cleared once its answer is stored.
  var sentFile = null;

  function showError(message) {
    var box = byId("attachment-error");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function showChip(file) {
    var chip = byId("attachment");
    if (!chip) return;
    chip.hidden = !file;
    byId("attachment-name").textContent = file ? file.name : "";
    var thumb = byId("attachment-thumb");
    thumb.removeAttribute("src");
    if (!file || !TYPES.test(file.type)) return;  // no preview: the server will say what it is
    // A data: URL (the CSP allows data: images, not blob:).
    var reader = new FileReader();
    reader.onload = function () { if (input().files[0] === file) thumb.src = reader.result; };
    reader.readAsDataURL(file);
  }

  function clearAttachment() {
    var field = input();
    if (field) field.value = "";
    showChip(null);
  }

  // Show what was chosen, dropped or pasted; one too large to send is refused at once (the
  // server checks everything else, and says what is wrong).
  function accept(file) {
    var field = input();
    if (!field) return;
    showError(null);
    if (file.size > MAX_BYTES) {
      clearAttachment();
      showError(field.dataset.tooLarge);
      return;
    }
    if (field.files[0] !== file) {
      var transfer = new DataTransfer();
      transfer.items.add(file);
      field.files = transfer.files;
    }
    // A new picture replaces the one an edited turn would have kept.
    var kept = document.querySelector("#followup .remove-kept-image");
    if (kept) kept.click();
    showChip(file);
  }

  function imageIn(data) {
    if (!data) return null;
    var i;
    for (i = 0; data.files && i < data.files.length; i++) {
      if (/^image\//.test(data.files[i].type)) return data.files[i];
    }
    for (i = 0; data.items && i < data.items.length; i++) {
      if (data.items[i].kind === "file" && /^image\//.test(data.items[i].type)) return data.items[i].getAsFile();
    }
    return null;
  }

  document.addEventListener("change", function (event) {
    if (event.target !== input()) return;
    if (event.target.files[0]) accept(event.target.files[0]);
    else showChip(null);
  });

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target : null;
    if (!target) return;
    if (target.closest("#attachment-remove")) {
      clearAttachment();
      showError(null);
      var field = byId("prompt");
      if (field) field.focus();
    } else if (target.closest(".remove-kept-image")) {
      var chip = target.closest(".kept-image");
      chip.querySelector("input[name=keep_image]").value = "0";
      chip.hidden = true;
    } else if (target.closest(".cancel-mode")) {
      var mode = target.closest("[data-mode]");
      var prompt = byId("prompt");
      if (mode && mode.dataset.mode === "edit" && savedPrompt !== null && prompt) prompt.value = savedPrompt;
      savedPrompt = null;
      if (prompt) prompt.focus();
    }
  });

  // Paste: a picture in the clipboard is attached; text pastes as usual.
  document.addEventListener("paste", function (event) {
    var form = byId("prompt-form");
    if (!form || !form.contains(event.target)) return;
    var file = imageIn(event.clipboardData);
    if (!file) return;
    var types = Array.prototype.slice.call(event.clipboardData.types || []);
    if (types.indexOf("text/plain") < 0) event.preventDefault();
    accept(file);
  });

  // Drop: a picture dropped anywhere on the form is attached.
  function carriesFiles(event) {
    return event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types || [], "Files") >= 0;
  }
  document.addEventListener("dragover", function (event) {
    var form = byId("prompt-form");
    if (!form || !form.contains(event.target) || !carriesFiles(event)) return;
    event.preventDefault();
    form.classList.add("dropping");
  });
  document.addEventListener("dragleave", function (event) {
    var form = byId("prompt-form");
    if (form && event.target === form) form.classList.remove("dropping");
  });
  document.addEventListener("drop", function (event) {
    var form = byId("prompt-form");
    if (!form || !form.contains(event.target) || !carriesFiles(event)) return;
    event.preventDefault();
    form.classList.remove("dropping");
    var file = imageIn(event.dataTransfer) || event.dataTransfer.files[0];
    if (file) accept(file);
  });

  // "Follow up", "Variation", "Edit", "Edit image": on the generator page, set the form's chip
  // in place and go to the prompt; elsewhere the link opens the generator with it set.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-followup]");
    if (!link || !byId("followup") || !window.htmx) return;
    event.preventDefault();
    var prompt = byId("prompt");
    if (link.classList.contains("edit-link") && savedPrompt === null) savedPrompt = prompt ? prompt.value : "";
    window.htmx.ajax("GET", link.getAttribute("data-followup"), { target: "#followup", swap: "outerHTML" })
      .then(function () {
        var field = byId("prompt");
        if (!field) return;
        field.focus();
        field.setSelectionRange(field.value.length, field.value.length);
      });
  });

  // Regenerate: into Results on the generator page; elsewhere the form posts and the browser
  // goes to the new version's page.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form.regenerate-form") || !byId("results") || !window.htmx) return;
    event.preventDefault();
    window.htmx.ajax("POST", form.getAttribute("action"), { source: form, target: "#results", swap: "afterbegin" });
  });

  // The picture goes with the request; once the answer is stored (and the picture not changed
  // meanwhile) the chip is cleared with the prompt. On any error both stay.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (elt && (elt.id === "generate-code" || elt.id === "generate-image")) {
      sentFile = input() && input().files[0] ? input().files[0] : null;
      savedPrompt = null;
    }
  });
  function answered() {
    if (sentFile && input() && input().files[0] === sentFile) clearAttachment();
    sentFile = null;
  }
  document.addEventListener("generated", answered);
  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail.elt;
    if (elt.matches && elt.matches("article.entry.status-done")) answered();
  });
})();
