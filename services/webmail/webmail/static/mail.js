// Mail pages: "select all", confirmations of irreversible actions, and live updates of new mail
// (Server-Sent Events from /evenements). Every page works without this file.
(() => {
  "use strict";

  // --- select every message of the page ------------------------------------------------------------
  const all = document.getElementById("choix-tous");
  if (all) {
    all.disabled = false;
    all.addEventListener("change", () => {
      document.querySelectorAll('#lignes-messages input[name="ids"]').forEach((box) => {
        box.checked = all.checked;
      });
    });
  }

  // --- confirmations -----------------------------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const button = event.target.closest(".webmail-confirmer");
    if (button && !window.confirm(button.dataset.confirmation)) event.preventDefault();
  });

  // --- live new mail -------------------------------------------------------------------------------------
  if (!("EventSource" in window)) return;
  const list = document.getElementById("liste-messages");
  const announcer = document.getElementById("nouveaux-messages");

  function plural(n, word) {
    return n + " " + word + (n > 1 ? "s" : "");
  }

  function updateBadge(folder, unread) {
    const item = document.querySelector('[data-dossier="' + CSS.escape(folder) + '"] .webmail-non-lus');
    if (!item) return;
    item.hidden = unread <= 0;
    const badge = item.querySelector(".fr-badge");
    const spoken = item.querySelector(".fr-sr-only");
    if (badge) badge.textContent = String(unread);
    if (spoken) spoken.textContent = ", " + plural(unread, "non lu");
  }

  function updateTitle(folder, unread) {
    const current = list ? list.dataset.dossier : null;
    if (folder !== "INBOX" && folder !== current) return;
    const bare = document.title.replace(/^\(\d+\)\s*/, "");
    document.title = unread > 0 ? "(" + unread + ") " + bare : bare;
  }

  function updateCount(unread) {
    const count = document.getElementById("compte-messages");
    if (!count) return;
    const total = Number(count.dataset.total || "0") + 1;
    count.dataset.total = String(total);
    count.textContent = plural(total, "message") + (unread > 0 ? ", dont " + plural(unread, "non lu") : "");
  }

  function announce(data) {
    if (!announcer) return;
    const alert = document.createElement("div");
    alert.className = "fr-alert fr-alert--info fr-alert--sm";
    const text = document.createElement("p");
    // textContent only: sender and subject come from the mail, never parsed as markup
    text.textContent = "Nouveau message de " + data.from + " : " + data.subject;
    alert.appendChild(text);
    announcer.appendChild(alert);
    while (announcer.children.length > 3) announcer.removeChild(announcer.firstElementChild);
    window.setTimeout(() => alert.remove(), 20000);
  }

  async function insertRow(entryId, unread) {
    const body = document.getElementById("lignes-messages");
    if (!body || body.querySelector('[data-message="' + CSS.escape(entryId) + '"]')) return;
    const response = await fetch("/courrier/message/" + encodeURIComponent(entryId) + "/ligne", {
      credentials: "same-origin",
      headers: { "HX-Request": "true" },
    });
    if (!response.ok) return;
    // The row is rendered (and escaped) by the server with the page's own template.
    const holder = document.createElement("tbody");
    holder.innerHTML = await response.text();
    const row = holder.querySelector("tr");
    if (!row || body.querySelector('[data-message="' + CSS.escape(entryId) + '"]')) return;
    row.classList.add("webmail-ligne--nouvelle");
    const empty = body.querySelector(".webmail-vide");
    if (empty) empty.remove();
    body.insertBefore(row, body.firstElementChild);
    updateCount(unread);
  }

  function listen() {
    const source = new EventSource("/evenements");
    source.addEventListener("new_mail", (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      updateBadge(data.folder, data.unread);
      updateTitle(data.folder, data.unread);
      if (data.folder !== "Junk" && data.folder !== "Quarantine" && data.folder !== "Sent") announce(data);
      if (list && list.dataset.dossier === data.folder && list.dataset.direct === "oui") {
        insertRow(data.entry_id, data.unread).catch(() => {});
      }
    });
    // the server is subscribed: from now on no new mail is missed (tests wait for this mark)
    source.addEventListener("pret", () => {
      document.documentElement.dataset.direct = "pret";
    });
    source.addEventListener("session", () => source.close());
    window.addEventListener("pagehide", () => source.close());
  }

  // Opened after the page's load event: a stream opened before it keeps the page "loading" forever.
  if (document.readyState === "complete") listen();
  else window.addEventListener("load", listen);
})();
