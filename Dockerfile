# syntax=docker/dockerfile:1
# jetfn: the runtime plus this repository's functions. The build stage bundles them with the
# dev dependencies installed; the image keeps the bundles and production dependencies only.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm npm ci
COPY tsconfig.json functions.yaml ./
COPY bin ./bin
COPY runtime ./runtime
COPY functions ./functions
# Bundles the runtime into .jetfn/runtime (cli.mjs, worker.mjs) and every handler into
# .jetfn/build: a broken handler fails the image build, not the first message.
RUN node bin/jetfn.js build

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev
# The sources stay beside the bundles: start-up checks each bundle's inputs by content hash
# and reuses it, so nothing is bundled or written at run time (and /app is not writable).
COPY --from=build /app/tsconfig.json /app/functions.yaml ./
COPY --from=build /app/bin ./bin
COPY --from=build /app/runtime ./runtime
COPY --from=build /app/functions ./functions
# Last: the runtime bundles must not look older than runtime/, or bin/jetfn.js rebuilds them.
COPY --from=build /app/.jetfn ./.jetfn

USER node
# 8080: /metrics, /healthz, /readyz, /functions. 8081: the ingress (functions.yaml `routes:`).
EXPOSE 8080 8081
# No curl in the image: node's fetch. Follows JETFN_HTTP_PORT when it is set.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.JETFN_HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1 and gets the signals itself. The first SIGTERM (or SIGINT) drains
# within JETFN_SHUTDOWN_TIMEOUT and exits 0; a second one exits at once with 1.
# NATS_URL must point at your cluster; there is no nats-server in the image.
CMD ["node", "bin/jetfn.js", "start"]
