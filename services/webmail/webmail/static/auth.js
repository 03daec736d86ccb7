// Authentication pages: live feedback on a new password (the directory's policy, through
// POST /mot-de-passe/politique), a live check that the confirmation matches, and the captcha's
// "Nouvelle image" button without losing what was typed. Everything is re-checked by the server on
// submit; without JavaScript the forms still work.
(() => {
  "use strict";

  const csrfToken = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  // Replace the messages of a DSFR fr-messages-group (aria-live region) with `items`:
  // [{text, kind}] where kind is "", "error", "valid" or "info".
  const showMessages = (group, items) => {
    if (!group) return;
    group.replaceChildren(
      ...items.map(({ text, kind }) => {
        const p = document.createElement("p");
        p.className = kind ? `fr-message fr-message--${kind}` : "fr-message";
        p.textContent = text;
        return p;
      }),
    );
  };

  const messagesOf = (input) => document.getElementById(input.getAttribute("aria-describedby") || "");

  // --- password policy ------------------------------------------------------------------------------
  document.querySelectorAll("input[data-politique]").forEach((input) => {
    const group = messagesOf(input);
    const initial = group ? Array.from(group.children).map((p) => ({ text: p.textContent, kind: "" })) : [];
    let timer = null;
    let sequence = 0;

    const check = async () => {
      const password = input.value;
      const mine = ++sequence;
      if (!password) {
        showMessages(group, initial);
        return;
      }
      try {
        const response = await fetch(input.dataset.politique, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
          body: JSON.stringify({ password }),
        });
        const answer = await response.json();
        if (mine !== sequence) return; // a newer keystroke already asked
        if (!answer.available) {
          showMessages(group, [{ text: answer.message, kind: "info" }]);
        } else if (answer.acceptable) {
          showMessages(group, [{ text: "Mot de passe conforme aux règles.", kind: "valid" }]);
        } else {
          showMessages(group, answer.problems.map((text) => ({ text, kind: "error" })));
        }
      } catch (error) {
        if (mine === sequence) {
          showMessages(group, [
            { text: "Vérification en direct indisponible : le mot de passe sera vérifié à l'envoi.", kind: "info" },
          ]);
        }
      }
    };

    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(check, 400);
    });
  });

  // --- confirmation ---------------------------------------------------------------------------------
  document.querySelectorAll("input[data-confirme]").forEach((input) => {
    const original = document.getElementById(input.dataset.confirme);
    const group = messagesOf(input);
    if (!original) return;
    const compare = () => {
      if (!input.value) {
        showMessages(group, []);
      } else if (input.value === original.value) {
        showMessages(group, [{ text: "Les deux saisies correspondent.", kind: "valid" }]);
      } else {
        showMessages(group, [{ text: "Les deux saisies ne correspondent pas.", kind: "error" }]);
      }
    };
    input.addEventListener("input", compare);
    original.addEventListener("input", () => {
      if (input.value) compare();
    });
  });

  // --- captcha --------------------------------------------------------------------------------------
  const renew = document.getElementById("captcha-nouveau");
  if (renew) {
    renew.addEventListener("click", async (event) => {
      event.preventDefault();
      const announce = document.getElementById("captcha-annonce");
      try {
        const response = await fetch("/captcha/nouveau", {
          method: "POST",
          credentials: "same-origin",
          headers: { "X-CSRF-Token": csrfToken() },
        });
        if (!response.ok) throw new Error(String(response.status));
      } catch (error) {
        if (announce) announce.textContent = "Impossible d'obtenir une nouvelle image. Rechargez la page.";
        return;
      }
      const version = Date.now();
      const image = document.getElementById("captcha-image");
      const audio = document.getElementById("captcha-audio");
      const link = document.getElementById("captcha-audio-lien");
      if (image) image.src = `/captcha.png?v=${version}`;
      if (audio) {
        audio.src = `/captcha.wav?v=${version}`;
        audio.load();
      }
      if (link) link.href = `/captcha.wav?v=${version}`;
      const field = document.getElementById("captcha");
      if (field) {
        field.value = "";
        field.focus();
      }
      if (announce) announce.textContent = "Nouvelle image et nouvelle version audio du code affichées.";
    });
  }
})();
