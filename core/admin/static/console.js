// The Switchboard console's script: keeps the panels live over the console's
// socket, runs the tail and sends the publish form. Plain browser JavaScript,
// no build step; the server renders every piece of HTML it puts in the page.
"use strict";

(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const csrf = meta("csrf-token");
  const path = meta("console-path");
  const tailSize = parseInt(meta("tail-size"), 10) || 200;
  const live = document.getElementById("live");
  const tailForm = document.getElementById("tail-form");
  const tailStatus = document.getElementById("tail-status");
  const tailBody = document.getElementById("tail-body");
  const publishForm = document.getElementById("publish-form");
  const publishResult = document.getElementById("publish-result");
  let socket = null;
  let tailing = null; // {tenant, room} asked for
  let retry = 500;

  function setLive(text, ok) {
    live.textContent = text;
    live.className = ok ? "status live" : "status";
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}${path}/socket?csrf=${encodeURIComponent(csrf)}`;
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      retry = 500;
      setLive("live", true);
      if (tailing) send({ type: "tail", tenant: tailing.tenant, room: tailing.room });
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      const data = message.data;
      if (message.type === "panels") {
        for (const [name, html] of Object.entries(data)) {
          const panel = document.getElementById(`panel-${name}`);
          if (panel) panel.innerHTML = html;
        }
      } else if (message.type === "tail") {
        tailBody.insertAdjacentHTML("afterbegin", data.html);
        while (tailBody.rows.length > tailSize) tailBody.deleteRow(-1);
      } else if (message.type === "tailing") {
        tailStatus.textContent = data.room
          ? `Tailing ${data.room} of tenant ${data.tenant}.`
          : "Not tailing any room.";
      } else if (message.type === "dropped") {
        tailStatus.textContent = `${data.count} events were not shown (too many at once).`;
      } else if (message.type === "error") {
        tailStatus.textContent = data.message;
      } else if (message.type === "logged_out") {
        location.assign(`${path}/login`);
      }
    });
    socket.addEventListener("close", (event) => {
      socket = null;
      if (event.code === 4401) {
        location.assign(`${path}/login`);
        return;
      }
      setLive("reconnecting…", false);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    });
  }

  function startTail(tenant, room) {
    tailing = { tenant, room };
    tailBody.innerHTML = "";
    send({ type: "tail", tenant, room });
  }

  tailForm.addEventListener("submit", (event) => {
    event.preventDefault();
    startTail(tailForm.tenant.value.trim(), tailForm.room.value.trim());
  });
  document.getElementById("tail-stop").addEventListener("click", () => {
    tailing = null;
    send({ type: "tail", tenant: "", room: "" });
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.tail-room");
    if (!button) return;
    tailForm.tenant.value = button.dataset.tenant;
    tailForm.room.value = button.dataset.room;
    startTail(button.dataset.tenant, button.dataset.room);
  });

  publishForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(publishForm);
    const body = {
      tenant: form.get("tenant"), room: form.get("room"),
      event: form.get("event"), data: form.get("data"),
    };
    publishResult.textContent = "Publishing…";
    try {
      const response = await fetch(`${path}/publish`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      publishResult.textContent = response.ok
        ? `Published ${body.event} to ${answer.room} of tenant ${answer.tenant}.`
        : `Refused: ${answer.code}: ${answer.message}`;
      publishResult.className = response.ok ? "ok" : "error";
    } catch (error) {
      publishResult.textContent = `Failed: ${error}`;
      publishResult.className = "error";
    }
  });

  connect();
})();
