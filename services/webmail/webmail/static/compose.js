// The compose page: address book completion in To/Cc/Bcc, attachments uploaded ahead with a progress
// bar, and drafts saved automatically. Without JavaScript the form still works (plain upload, buttons).
(() => {
  "use strict";
  const form = document.getElementById("formulaire-message");
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  // --- completion: an ARIA combobox over the last address being typed -------------------------------
  function setupCompletion(input) {
    const list = document.getElementById(input.getAttribute("aria-controls"));
    const url = input.dataset.completion;
    let timer = null;
    let active = -1;
    let items = [];
    let request = 0;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-expanded", "false");

    const current = () => {
      const value = input.value;
      const cut = Math.max(value.lastIndexOf(","), value.lastIndexOf(";"));
      return { head: cut >= 0 ? value.slice(0, cut + 1) + " " : "", word: value.slice(cut + 1).trim() };
    };
    const close = () => {
      list.hidden = true;
      list.replaceChildren();
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
      items = [];
    };
    const highlight = (index) => {
      const options = list.querySelectorAll('[role="option"]');
      options.forEach((el, i) => el.setAttribute("aria-selected", i === index ? "true" : "false"));
      active = index;
      if (index >= 0 && options[index]) {
        input.setAttribute("aria-activedescendant", options[index].id);
        options[index].scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    };
    const choose = (index) => {
      const item = items[index];
      if (!item) return;
      input.value = current().head.replace(/^\s+/, "") + item.value + ", ";
      close();
      input.focus();
      input.dispatchEvent(new Event("input", { bubbles: true }));
    };
    const show = (results) => {
      items = results;
      list.replaceChildren();
      if (!results.length) { close(); return; }
      results.forEach((item, i) => {
        const li = document.createElement("li");
        li.id = `${list.id}-${i}`;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.textContent = item.label;
        li.addEventListener("mousedown", (event) => { event.preventDefault(); choose(i); });
        list.appendChild(li);
      });
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      active = -1;
    };
    const lookup = async () => {
      const { word } = current();
      if (word.length < 2 || word.includes("@")) { close(); return; }
      const mine = ++request;
      try {
        const response = await fetch(`${url}?q=${encodeURIComponent(word)}`, {
          headers: { Accept: "application/json" }, credentials: "same-origin",
        });
        if (!response.ok || mine !== request) return;
        show(await response.json());
      } catch (error) {
        close();
      }
    };
    input.addEventListener("input", (event) => {
      if (!event.isTrusted) return;
      clearTimeout(timer);
      timer = setTimeout(lookup, 200);
    });
    input.addEventListener("keydown", (event) => {
      if (list.hidden) return;
      if (event.key === "ArrowDown") { event.preventDefault(); highlight(Math.min(active + 1, items.length - 1)); }
      else if (event.key === "ArrowUp") { event.preventDefault(); highlight(Math.max(active - 1, 0)); }
      else if (event.key === "Enter" && active >= 0) { event.preventDefault(); choose(active); }
      else if (event.key === "Escape") { event.preventDefault(); close(); }
    });
    input.addEventListener("blur", () => setTimeout(close, 150));
  }

  // --- attachments ------------------------------------------------------------------------------------
  const attachmentList = document.getElementById("pieces-jointes");
  const attachmentStatus = document.getElementById("etat-pieces");
  let rowCount = attachmentList ? attachmentList.children.length : 0;

  function addAttachmentRow(item) {
    rowCount += 1;
    const li = document.createElement("li");
    li.className = "fr-checkbox-group fr-checkbox-group--sm";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = "garder";
    box.value = item.token;
    box.id = `piece-ajout-${rowCount}`;
    box.checked = true;
    const label = document.createElement("label");
    label.className = "fr-label";
    label.htmlFor = box.id;
    label.textContent = item.size ? `${item.filename} (${item.size})` : item.filename;
    li.append(box, label);
    attachmentList.appendChild(li);
    return li;
  }

  function uploadFile(file) {
    const progress = document.getElementById("progression-envoi");
    const bar = document.getElementById("barre-progression");
    const label = document.getElementById("progression-libelle");
    return new Promise((resolve) => {
      const data = new FormData();
      data.append("fichier", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.dataset.upload);
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("Accept", "application/json");
      label.textContent = `Envoi de « ${file.name} »`;
      bar.value = 0;
      progress.hidden = false;
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) bar.value = Math.round((event.loaded / event.total) * 100);
      });
      xhr.addEventListener("load", () => {
        progress.hidden = true;
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (error) { body = {}; }
        if (xhr.status === 200 && body.token) {
          addAttachmentRow(body);
          attachmentStatus.textContent = `Pièce jointe ajoutée : ${body.filename}.`;
          markChanged();
        } else {
          attachmentStatus.textContent = body.error || `Le fichier « ${file.name} » n'a pas pu être joint.`;
        }
        resolve();
      });
      xhr.addEventListener("error", () => {
        progress.hidden = true;
        attachmentStatus.textContent = `Le fichier « ${file.name} » n'a pas pu être joint : réessayez.`;
        resolve();
      });
      xhr.send(data);
    });
  }

  function keptBytesTooMany(files) {
    const limit = Number(form.dataset.maxUpload || 0);
    const total = Array.from(files).reduce((sum, f) => sum + f.size, 0);
    return limit && total > limit;
  }

  // --- drafts -----------------------------------------------------------------------------------------
  let changed = false;
  let saving = false;
  let sending = false;
  let pendingSubmit; // the button of a submit that waits for a save in flight (undefined: none)
  const draftField = document.getElementById("champ-brouillon");
  const draftStatus = document.getElementById("etat-brouillon");
  function markChanged() { changed = true; }

  async function saveDraft() {
    if (!changed || saving || sending) return;
    saving = true;
    changed = false;
    const data = new FormData(form);
    data.delete("fichiers"); // files are uploaded ahead (uploadFile), not with every save
    data.delete("action");
    const sentRows = Array.from(attachmentList.children);
    try {
      const response = await fetch(form.dataset.autosave, {
        method: "POST",
        body: data,
        headers: { "X-CSRF-Token": csrf(), Accept: "application/json" },
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok && body.id) {
        draftField.value = body.id;
        // The draft now holds the attachments: they are named by its parts from here on.
        sentRows.forEach((row) => row.remove());
        const after = attachmentList.firstChild;
        body.attachments.forEach((item) => attachmentList.insertBefore(addAttachmentRow(item), after));
        draftStatus.textContent = `Brouillon enregistré à ${body.saved_at}.`;
      } else {
        changed = true;
        draftStatus.textContent = body.error ? `Brouillon non enregistré : ${body.error}` : "Brouillon non enregistré : réessai dans quelques secondes.";
      }
    } catch (error) {
      changed = true;
      draftStatus.textContent = "Brouillon non enregistré : le serveur ne répond pas, réessai dans quelques secondes.";
    } finally {
      saving = false;
      if (pendingSubmit !== undefined) {
        const submitter = pendingSubmit;
        pendingSubmit = undefined;
        form.requestSubmit(submitter);
      }
    }
  }

  if (!form) return;
  form.querySelectorAll("[data-completion]").forEach(setupCompletion);
  form.addEventListener("input", (event) => { if (event.target.type !== "file") markChanged(); });
  form.addEventListener("change", (event) => { if (event.target.name === "garder") markChanged(); });
  const fileInput = document.getElementById("champ-fichiers");
  fileInput.addEventListener("change", async () => {
    const files = Array.from(fileInput.files);
    if (!files.length) return;
    if (keptBytesTooMany(files)) {
      attachmentStatus.textContent = `Fichier trop volumineux : ${form.dataset.maxUploadLabel} au plus pour l'ensemble des pièces jointes.`;
      fileInput.value = "";
      return;
    }
    fileInput.disabled = true;
    for (const file of files) await uploadFile(file);
    fileInput.value = "";
    fileInput.disabled = false;
  });
  form.addEventListener("submit", (event) => {
    if (saving) {
      // Let the save in flight finish first, so that the draft field names the latest draft (which
      // sending deletes) and no stray draft is left behind.
      event.preventDefault();
      pendingSubmit = event.submitter || null;
      return;
    }
    sending = true;
  });
  setInterval(saveDraft, 10000);
  // For tests and for users leaving the page: save now.
  form.addEventListener("webmail:save-draft", () => { changed = true; saveDraft(); });
})();
