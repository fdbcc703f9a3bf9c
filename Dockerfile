# syntax=docker/dockerfile:1
# jetfn: the runtime plus this repository's functions, bundled at image build time.
FROM node:20-bookworm-slim

ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev

COPY tsconfig.json functions.yaml ./
COPY bin ./bin
COPY runtime ./runtime
COPY functions ./functions
# Bundles every handler now: a broken one fails the image build, and start-up reuses the
# bundles (their content hashes match), so nothing is written at run time.
RUN node bin/jetfn.js build

USER node
EXPOSE 8080
# NATS_URL must point at your cluster; there is no nats-server in the image.
CMD ["node", "bin/jetfn.js", "start"]
