// Outpost demo client: served by the origin under /static/, cached at the
// edges. It lists a user's tweets through the public API.
(function () {
  "use strict";
  async function showTweets(user, into) {
    const res = await fetch("/api/users/" + encodeURIComponent(user) + "/tweets");
    if (!res.ok) {
      into.textContent = "could not load tweets (" + res.status + ")";
      return;
    }
    const data = await res.json();
    into.replaceChildren();
    for (const t of data.tweets) {
      const el = document.createElement("article");
      el.className = "tweet";
      const who = document.createElement("div");
      who.className = "author";
      who.textContent = t.author.display_name + " @" + t.author.username;
      const text = document.createElement("p");
      text.textContent = t.text;
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = new Date(t.created_at).toLocaleString();
      el.append(who, text, meta);
      for (const m of t.media) {
        const img = document.createElement("img");
        img.src = m;
        img.alt = "";
        el.append(img);
      }
      into.append(el);
    }
  }
  window.outpost = { showTweets: showTweets };
  document.addEventListener("DOMContentLoaded", function () {
    const el = document.getElementById("tweets");
    if (el) showTweets(el.dataset.user || "alice", el);
  });
})();
