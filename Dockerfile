# jetfn: the runtime plus this repository's functions, bundled at image build time.
FROM node:20-bookworm-slim

ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force

COPY tsconfig.json functions.yaml ./
COPY bin ./bin
COPY runtime ./runtime
COPY functions ./functions
# Bundles every handler now, so a broken one fails the image build and start-up is fast.
RUN node bin/jetfn.js build && chown -R node:node /app/.jetfn

USER node
EXPOSE 8080
# NATS_URL must point at your cluster; there is no nats-server in the image.
CMD ["node", "bin/jetfn.js", "start"]
